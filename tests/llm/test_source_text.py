"""Rule text from files and answers, read as Python reads a source file (optforge/source_text.py)."""

import codecs

import pytest

from optforge import seeds
from optforge.commands.eval import _load_source
from optforge.rule_check import check_rule
from optforge.source_text import SourceDecodeError, normalise_text, read_source

ADAMW = seeds.source("adamw")


@pytest.mark.parametrize("encoding,bom", [("utf-8", codecs.BOM_UTF8), ("utf-8", b""), ("utf-16-le", codecs.BOM_UTF16_LE),
                                          ("utf-16-be", codecs.BOM_UTF16_BE), ("utf-32-le", codecs.BOM_UTF32_LE)])
@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_a_rule_file_reads_like_python_reads_it(tmp_path, encoding, bom, eol):
    path = tmp_path / "rule.py"
    path.write_bytes(bom + ADAMW.replace("\n", eol).encode(encoding))
    assert read_source(path) == ADAMW and not check_rule(read_source(path))


def test_optforge_eval_reads_a_rule_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom_rule.py"
    path.write_bytes(codecs.BOM_UTF8 + ADAMW.replace("\n", "\r\n").encode())
    assert check_rule(path.read_text(encoding="utf-8"))  # the mark is a syntax error in a str
    source, name = _load_source(str(path))
    assert (source, name) == (ADAMW, "bom_rule.py")


def test_a_file_that_is_not_unicode_text_is_named(tmp_path):
    path = tmp_path / "latin1.py"
    path.write_bytes("# caf\u00e9\n".encode("latin-1") + ADAMW.encode())
    with pytest.raises(SourceDecodeError, match=r"latin1.py is not UTF-8 text \(byte 0xe9 at offset 5\)"):
        read_source(path)


def test_normalise_text():
    assert normalise_text("\ufeffa\r\nb\rc\u00a0d") == "a\nb\nc d"
    assert normalise_text(codecs.BOM_UTF16_LE + "x\r\n".encode("utf-16-le")) == "x\n"
