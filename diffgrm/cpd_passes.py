"""Several digits per network pass: how CPD splits the n fills over S passes, and how one pass's
prediction is read by the beams its fills create.

With S = n passes (the default) every pass fills one digit. With S < n the last pass fills the
remaining digits as chained (digit, code) choices, all scored by that pass's one prediction; the
children of each fill read the row of the beam the pass started from (:class:`_Prediction`), so the
log-probabilities are never copied per beam. :mod:`diffgrm.cpd` runs the search.
"""

from __future__ import annotations

import torch

from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import MASK


def pass_sizes(n: int, passes: int) -> list[int]:
    """How many digits each of ``passes`` passes fills: one per pass, and the last pass the rest.

    A prediction knows more the more digits are filled, so the several-digit fill is best left to
    the end, where each prediction has read the most (the measured split choices are on the
    docs' benchmarks page, "Fewer passes than digits")."""
    if not isinstance(passes, int) or not 1 <= passes <= n:
        raise DiffGRMError(f"passes must be a whole number between 1 and {n} (the SID's digits), got {passes}")
    return [1] * (passes - 1) + [n - passes + 1]


class _Prediction:
    """One network pass's log-probabilities and, for each current beam, the row it reads.

    A pass that fills several digits keeps its one prediction: after each fill, a child reads the
    row of the beam the pass started from (``rows``), and the log-probs are never copied per beam.
    With masked-only log-probs (``start`` = the tokens at the pass's start), a digit's column is
    its rank among the digits masked when the pass began.
    """

    def __init__(self, logp: torch.Tensor, start: torch.Tensor | None) -> None:
        self.logp = logp  # [B, P0, D, K], D = n or the digits masked at the pass's start
        self.rows: torch.Tensor | None = None  # [B, P] row of logp per current beam (None: beam p reads row p)
        # [B, P0, n] the column of each digit (masked-only: its rank among the start's masked digits)
        self.rank = None if start is None else torch.cumsum((start == MASK).long(), -1) - 1
        self.fresh = True  # no fill yet: masked-only columns are exactly the parents' masked digits

    def follow(self, parent: torch.Tensor) -> "_Prediction":
        """The same prediction, read by the children ``[B, beam]`` of the current beams."""
        self.rows = parent if self.rows is None else self.rows.gather(1, parent)
        self.fresh = False
        return self

    def _locate(self, parent: torch.Tensor, digit: torch.Tensor, batch: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The row and column of ``logp`` holding current beam ``parent``'s prediction of ``digit``
        (``batch``, ``parent`` and ``digit`` broadcast together)."""
        row = parent if self.rows is None else self.rows[batch, parent]
        col = digit if self.rank is None else self.rank[batch, row, digit]
        return row, col

    def at(self, digits: torch.Tensor) -> torch.Tensor | None:
        """Log-probs ``[B, P, m, K]`` of ``digits [B, P, m]`` for each current beam (None: ``logp`` itself)."""
        b, p, m = digits.shape
        if self.rank is not None and self.fresh and m == self.logp.shape[2]:
            return None  # the masked digits of every beam, ascending: what the masked-only pass returned
        batch = torch.arange(b, device=digits.device)[:, None, None]
        parent = torch.arange(p, device=digits.device)[None, :, None]
        row, col = self._locate(parent, digits, batch)
        return self.logp[batch, row, col]

    def values(self, parent: torch.Tensor, digit: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Log-prob of ``code`` in ``digit`` for current beam ``parent``, elementwise over ``[B, T]``."""
        batch = torch.arange(parent.shape[0], device=parent.device)[:, None]
        row, col = self._locate(parent, digit, batch)
        return self.logp[batch, row, col, code]

    def full(self) -> torch.Tensor:
        """Every digit's log-probs ``[B, P, n, K]`` per current beam (traces; never masked-only)."""
        if self.rows is None:
            return self.logp
        return self.logp.gather(1, self.rows[..., None, None].expand(-1, -1, *self.logp.shape[2:]))
