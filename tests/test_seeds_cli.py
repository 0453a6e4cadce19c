"""`optforge seeds`: the table prints paper titles cut only between words."""

from optforge import seeds
from optforge.commands.seeds import PAPER_WIDTH, paper_cell


def test_long_titles_are_cut_between_words_with_an_ellipsis():
    title = "Symbolic Discovery of Optimization Algorithms (Chen et al., 2023, arXiv:2302.06675)"
    cell = paper_cell(title)
    assert len(cell) <= PAPER_WIDTH and cell.endswith(" …")
    kept = cell[: -len(" …")]
    assert title.startswith(kept) and title[len(kept)] == " "  # the cut falls on a word boundary


def test_every_seed_title_in_the_table_is_whole_words():
    for name in seeds.names():
        paper = seeds.info(name).paper
        cell = paper_cell(paper)
        words = cell.removesuffix(" …").split()
        assert words == paper.split()[: len(words)], (name, cell)
