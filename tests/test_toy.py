"""The toy world: 64 items on an 8 x 8 lattice of SIDs, users who keep a genre and hover around a level."""

import numpy as np
import pytest

from diffgrm import viz
from diffgrm.errors import DiffGRMError
from diffgrm.toy import CODES, GENRES, lattice_codes, supervision, toy_prepared, write_data


def test_the_toy_data_is_the_lattice_and_its_users_keep_a_genre(tmp_path):
    prepared = toy_prepared(write_data(tmp_path / "data", users=300, seed=1))
    codes = prepared.catalogue.codes
    assert codes.shape == (64, 2) and {tuple(c) for c in codes.tolist()} == {tuple(c) for c in lattice_codes().tolist()}
    assert prepared.items["title"].iloc[9] == f"{GENRES[codes[9, 0]].title()} level {codes[9, 1] + 1}"
    test = prepared.splits["test"]
    same_genre = np.mean([codes[t, 0] == np.bincount(codes[h, 0]).argmax() for h, t in zip(test.histories, test.targets)])
    near_level = np.mean([abs(int(codes[t, 1]) - int(np.median(codes[h, 1]))) <= 2 for h, t in zip(test.histories, test.targets)])
    assert same_genre > 0.8 and near_level > 0.8  # an easy digit and a harder, but learnable, one
    sup = supervision(prepared)
    assert sup.shape == (CODES, CODES) and int(sup.to_numpy().sum()) == 3 * len(prepared.splits["train"])


def test_the_lattice_takes_two_digit_traces_only(traces_4):
    with pytest.raises(DiffGRMError, match="2-digit SIDs"):
        viz.lattice_figure(traces_4, 1, codebook_size=8)


@pytest.fixture
def traces_4():
    import torch

    from diffgrm.cpd import cpd_search
    from diffgrm.sid_index import SIDIndex

    codes = np.array([[a, b, c, d] for a in range(2) for b in range(2) for c in range(2) for d in range(2)])
    index = SIDIndex(torch.from_numpy(codes), 2)
    return cpd_search(lambda t: torch.log_softmax(torch.zeros(*t.shape, 2), -1), index, 1, beam=4, topk=2,
                      trace=True).traces[0]
