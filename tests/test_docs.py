"""The product's prose as a contract: the README stays a user's page of about 8 KB that links into
docs/, and no dev-log wording (who changed what when, a commit hash used as a date, a note to
oneself) sits in the README, docs/ or the package's docstrings and messages. Measurements may name
a baseline revision they ran beside; they name a bench script, a machine and a date."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_LOG = [re.compile(p, re.I) for p in (
    r"\b(previous|last|earlier|this|next|a later) (session|stop)\b",
    r"\byesterday\b",
    r"\b(TODO|FIXME|XXX)\b",
    r"\b(since|as of|until|up to) `?[0-9a-f]{7,40}\b",
    r"\b(I|we) (fixed|added|changed|moved|removed|broke|rewrote)\b",
    r"\b(fixed|added|changed) (yesterday|today|this week|last week)\b",
)]


def _product_files():
    yield ROOT / "README.md"
    yield from sorted((ROOT / "docs").glob("*.md"))
    yield from sorted((ROOT / "trtprof").rglob("*.py"))


def dev_log_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if any(p.search(line) for p in DEV_LOG)]


def test_no_dev_log_wording_in_the_product():
    hits = [f"{p.relative_to(ROOT)}: {line}" for p in _product_files() for line in dev_log_lines(p.read_text())]
    assert not hits, "\n".join(hits)


def test_the_dev_log_check_can_fail():
    planted = ("Fixed in the previous session.\nfaster since 755718e\nTODO: measure\n"
               "we fixed the flush\nthe nsys session clock\ncompared with baseline `f315613`\n")
    assert dev_log_lines(planted) == ["Fixed in the previous session.", "faster since 755718e", "TODO: measure",
                                      "we fixed the flush"]


def test_the_readme_is_a_users_page_that_links_into_docs():
    text = (ROOT / "README.md").read_text()
    assert 5_000 <= len(text.encode()) <= 10_500, len(text.encode())
    for doc in ("recording.md", "schema.md", "measurements.md", "report.md", "development.md"):
        assert f"docs/{doc}" in text, doc
        assert (ROOT / "docs" / doc).is_file(), doc
    for heading in ("## Set-up", "## Commands"):
        assert heading in text
    assert "profile(" in text and "exit code" in text.lower()


def doc_examples(text: str) -> list[tuple[list[str], list[str]]]:
    """(argv after `trtprof`, lines shown) of each `$ trtprof ...` example in a fenced block."""
    out = []
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        lines = block.splitlines()
        if lines and lines[0].startswith("$ trtprof "):
            out.append((lines[0].split()[2:], [line for line in lines[1:] if line.strip()]))
    return out


def missing_lines(shown: list[str], printed: str) -> list[str]:
    """Lines of a documented example the command did not print (`...` at the end: a prefix)."""
    real = printed.splitlines()
    return [s for s in shown if not any(r.startswith(s[:-3].rstrip()) if s.endswith("...") else r == s
                                        for r in real)]


def test_documented_command_output_is_what_the_command_prints():
    """docs/report.md showed a comparison of captures since re-taken (other numbers, another GPU)."""
    from click.testing import CliRunner

    from trtprof.cli import main

    examples = [ex for doc in sorted((ROOT / "docs").glob("*.md")) for ex in doc_examples(doc.read_text())]
    assert examples
    for argv, shown in examples:
        args = [str(ROOT / a) if (ROOT / a).exists() else a for a in argv]
        res = CliRunner().invoke(main, args + (["--no-html"] if argv[0] == "compare" else []))
        assert res.exit_code == 0, res.output
        assert shown and not missing_lines(shown, res.output), missing_lines(shown, res.output)


def test_the_output_check_can_fail():
    printed = "B is 0.26 ms faster\n  row 1.0\nwarning: runtimes differ (cpp -> python), so"
    assert missing_lines(["B is 0.26 ms faster", "warning: runtimes differ ..."], printed) == []
    assert missing_lines(["B is 0.33 ms faster", "  row 1.0", "warning: GPUs differ ..."], printed) == [
        "B is 0.33 ms faster", "warning: GPUs differ ..."]
