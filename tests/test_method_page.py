"""docs/method.md: the method with its equations; it cites the paper, and every "method.md section N"
anywhere in the repository names a section the page has."""

import re

from tests.conftest import ROOT

PAGE = ROOT / "docs" / "method.md"
CITED = re.compile(r"method\.md(?:\]\([^)]*\))?,? sections? (\d+(?:\.\d+)?)")


def sections() -> set[str]:
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", PAGE.read_text(), flags=re.M))


def test_the_method_page_has_its_sections_equations_and_references():
    text = PAGE.read_text()
    assert {"0", "1", "1.5", "2", "3", "3.2", "4", "4.2", "5", "6"} <= sections()
    assert "arxiv.org/abs/2510.21805" in text and "arxiv.org/abs/2510.21805" in (ROOT / "README.md").read_text()
    for idea in ("2202.04200", "2406.07524", "2502.09992", "2305.05065"):  # MaskGIT, MDLM, LLaDA, TIGER
        assert f"arxiv.org/abs/{idea}" in text, idea
    display = re.findall(r"^\$\$$(.+?)^\$\$$", text, flags=re.M | re.S)
    assert len(display) >= 10, f"{len(display)} display equations"
    for name in (r"\mathcal{L}_{\text{OCN}}", r"\kappa_d", r"S(b)", r"\mathrm{NDCG@}K"):
        assert name in text, name


def test_every_mention_of_a_method_section_resolves():
    have = sections()
    files = [p for pattern in ("docs/*.md", "notebooks/*.py", "diffgrm/**/*.py", "bench/**/*.py", "app/*.py")
             for p in ROOT.glob(pattern)]
    cited = {(str(p.relative_to(ROOT)), n) for p in files for n in CITED.findall(p.read_text())}
    assert len(cited) >= 8
    missing = sorted((f, n) for f, n in cited if n not in have)
    assert not missing, f"mentions of method.md sections the page lacks: {missing}"
    mkdocs = (ROOT / "mkdocs.yml").read_text()
    assert "method.md" in mkdocs and "pymdownx.arithmatex" in mkdocs


def test_the_method_notebooks_carry_their_equations_and_the_packages_lines():
    for name in ("01_pse", "02_ocn", "03_cpd"):
        text = (ROOT / "notebooks" / f"{name}.py").read_text()
        markdown = "\n".join(line[2:] for line in text.splitlines() if line.startswith("# "))
        assert markdown.count("$$") // 2 >= 5, f"{name}: {markdown.count('$$') // 2} display equations"
        assert "print(source(" in text, f"{name} shows no code of the package beside its equations"
