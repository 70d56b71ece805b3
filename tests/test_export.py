"""``python -m reference export --format posteriordb``: posteriordb's layout, read back and checked
against the exact posterior; unusable input is exit 2 with nothing written; writes are atomic."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import pytest

from models import PRESETS, RUBIN
from reference import export, posterior
from reference.check import check
from reference.cli import main
from reference.export import GENERATOR, POSTERIORDB_NAME, read_posteriordb, to_datatree

#: posteriordb's R package asserts exactly these top-level keys of a reference posterior's info
INFO_KEYS = ["name", "inference", "diagnostics", "checks_made", "comments", "added_by", "added_date", "versions"]
#: key order of posteriordb's eight_schools-eight_schools_noncentered draws file
DRAW_KEYS = [*(f"theta[{j + 1}]" for j in range(8)), "mu", "tau"]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("pdb") / "export"
    assert main(["export", "--format", "posteriordb", "--out", str(out), "--seed", "7"]) == 0
    return out


def test_layout_names_and_sizes(exported):
    assert _files(exported) == [
        "reference_posteriors", "reference_posteriors/draws", "reference_posteriors/draws/draws",
        f"reference_posteriors/draws/draws/{POSTERIORDB_NAME}.json.zip", "reference_posteriors/draws/info",
        f"reference_posteriors/draws/info/{POSTERIORDB_NAME}.info.json"]
    with zipfile.ZipFile(exported / "reference_posteriors/draws/draws" / f"{POSTERIORDB_NAME}.json.zip") as zf:
        assert zf.namelist() == [f"{POSTERIORDB_NAME}.json"]
    chains, _ = read_posteriordb(exported)
    assert len(chains) == 10
    for c in chains:
        assert list(c) == DRAW_KEYS and all(len(v) == 1000 for v in c.values())


def test_read_back_passes_the_suites_check(exported):
    chains, _ = read_posteriordb(exported)
    tree = to_datatree(chains, RUBIN.school)
    assert dict(tree["posterior"].sizes) == {"chain": 10, "draw": 1000, "school": 8}
    verdict = check(tree, posterior(RUBIN, PRESETS["default"]))
    assert verdict.passed, verdict.failed


def test_info_names_method_prior_data_seed_and_sizes(exported):
    _, info = read_posteriordb(exported)
    assert list(info) == INFO_KEYS
    assert info["name"] == POSTERIORDB_NAME
    assert info["inference"]["method"] == "analytical"  # posteriordb accepts stan_sampling or analytical
    args = info["inference"]["method_arguments"]
    assert "grid" in args["description"] and "closed form" in args["description"]
    assert args["prior"] == str(PRESETS["default"]) and args["prior_name"] == "default"
    assert args["data"] == "rubin" and args["data_digest"] == RUBIN.digest()
    assert (args["seed"], args["chains"], args["draws_per_chain"]) == (7, 10, 1000)
    assert args["provenance"]["data"]["y"] == list(RUBIN.y)
    assert args["posteriordb_posterior"] == POSTERIORDB_NAME
    assert info["diagnostics"]["ndraws"] == 10_000 and info["diagnostics"]["nchains"] == 10
    assert info["added_by"] == GENERATOR and info["versions"] is None
    dt.date.fromisoformat(info["added_date"])


def test_same_seed_same_bytes_and_a_previous_export_is_replaced(tmp_path, capsys):
    out = tmp_path / "e"
    args = ["export", "--out", str(out), "--chains", "2", "--draws", "50", "--seed", "3"]
    assert main(args) == 0
    zpath = out / "reference_posteriors/draws/draws" / f"{POSTERIORDB_NAME}.json.zip"
    first = zpath.read_bytes()
    capsys.readouterr()
    assert main(args) == 0
    assert "replaced a previous export" in capsys.readouterr().err
    assert zpath.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["e"]  # no temporary folders left


def test_other_priors_get_their_own_name_and_fixed_tau_has_no_tau(tmp_path):
    out = tmp_path / "tau8"
    assert main(["export", "--out", str(out), "--prior", "notebook-tau8", "--chains", "2", "--draws", "20"]) == 0
    name = "rubin-eight_schools_notebook-tau8"
    chains, info = read_posteriordb(out, name)
    assert "tau" not in chains[0] and info["inference"]["method_arguments"]["posteriordb_posterior"] is None
    assert check(to_datatree(chains, RUBIN.school), posterior(RUBIN, PRESETS["notebook-tau8"])).passed


@pytest.mark.parametrize("extra, message", [
    (["--chains", "0"], "--chains"),
    (["--draws", "-3"], "--draws"),
    (["--format", "csv"], "--format = 'csv'"),
    (["--prior", "nonsense"], "nonsense"),
    (["--chains", "1001", "--draws", "1000"], "at most"),
])
def test_bad_options_exit_2_and_write_nothing(tmp_path, capsys, extra, message):
    assert main(["export", "--out", str(tmp_path / "new"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_unusable_out_exits_2_and_leaves_it_alone(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    assert main(["export", "--out", str(a_file)]) == 2
    assert "--out = " in capsys.readouterr().err and a_file.read_text() == "keep me"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.md").write_text("mine")
    assert main(["export", "--out", str(other)]) == 2
    assert "not a previous export" in capsys.readouterr().err
    assert _files(other) == ["notes.md"]
    (other / "notes.md").unlink()
    (other / "reference_posteriors" / "mine").mkdir(parents=True)  # folders only, but not an export's
    assert main(["export", "--out", str(other)]) == 2
    assert _files(other) == ["reference_posteriors", "reference_posteriors/mine"]
    assert main(["export", "--out", str(tmp_path / "missing" / "deeper")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "other"]


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    out = tmp_path / "e"
    assert main(["export", "--out", str(out), "--chains", "2", "--draws", "10"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(path, member, text):
        Path(path).write_text(text[:100])  # half a file, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_write_zip", broken)
    assert main(["export", "--out", str(out), "--chains", "2", "--draws", "10", "--seed", "9"]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # the old export, intact
    assert [p.name for p in tmp_path.iterdir()] == ["e"]
    assert main(["export", "--out", str(tmp_path / "fresh")]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["e"]


def test_info_json_is_valid_json_without_nan(exported):
    text = (exported / "reference_posteriors/draws/info" / f"{POSTERIORDB_NAME}.info.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
