"""The default mappings and Salesforce metadata are found installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import connector.bundled as bundled
import sandboxes.salesforce
from connector.cli import main
from connector.config import config_for_tests
from connector.demo import SAMPLE_ORG

REPO = Path(__file__).resolve().parents[1]


def test_a_checkout_reads_the_top_level_mappings_folder() -> None:
    assert bundled.mappings_dir() == REPO / "mappings"
    assert bundled.salesforce_metadata_dir() == REPO / "mappings" / "salesforce"


def test_an_installed_package_reads_its_bundled_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "connector" / "bundled" / "mappings"
    installed.mkdir(parents=True)
    monkeypatch.setattr(bundled, "_INSTALLED", installed)
    monkeypatch.setattr(bundled, "_CHECKOUT", tmp_path / "no-checkout")
    assert bundled.default_mapping("dynamics") == installed / "dynamics.yaml"


def test_missing_defaults_name_both_places_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundled, "_INSTALLED", tmp_path / "a")
    monkeypatch.setattr(bundled, "_CHECKOUT", tmp_path / "b")
    with pytest.raises(FileNotFoundError, match=r"set crm\.mapping"):
        bundled.mappings_dir()


def test_without_crm_mapping_the_default_for_the_crm_is_used() -> None:
    config = config_for_tests({"crm": {"kind": "dynamics"}})
    assert config.mapping_path == REPO / "mappings" / "dynamics.yaml"


def test_an_explicit_crm_mapping_wins(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("{}")
    config = config_for_tests({"crm": {"kind": "salesforce", "mapping": str(mine)}})
    assert config.mapping_path == mine


@pytest.mark.parametrize(
    ("args", "seed"),
    [([], SAMPLE_ORG), (["--empty"], None), (["--seed", __file__], __file__)],
    ids=["sample org by default", "empty on request", "a seed file"],
)
def test_the_salesforce_sandbox_command_deploys_dealbridges_metadata(
    monkeypatch: pytest.MonkeyPatch, args: list[str], seed: object
) -> None:
    served: dict[str, object] = {}
    monkeypatch.setattr(
        sandboxes.salesforce, "serve_forever", lambda host, port, **kw: served.update(kw)
    )
    result = CliRunner().invoke(main, ["sandbox", "salesforce", *args])
    assert result.exit_code == 0, result.output
    assert served["seed"] == seed
    assert served["metadata_dir"] == REPO / "mappings" / "salesforce"
