"""The local hub: registry commands, model cards, licences, and names/paths that must not escape."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest

import tinymodels as tiny
from brushwork.errors import UnsafePath
from brushwork.models.licenses import LicenseRefused, check_commercial, describe, normalize_license
from brushwork.models.load import load_pipeline
from brushwork.models.registry import SCHEMA_VERSION, Registry, resolve_model


@pytest.fixture
def carded(fixtures, tmp_path):
    folder = tmp_path / "cat-model"
    shutil.copytree(fixtures["sd1"]["folder"], folder)
    tiny.card(folder, "creativeml-openrail-m", "base_model: runwayml/stable-diffusion-v1-5\ntags:\n  - cats\n  - tiny\n")
    return folder


def test_add_list_show_remove(cli, carded, fixtures, home):
    code, out, _ = cli("add", str(carded))
    assert code == 0 and "cat-model" in out and "creativeml-openrail-m" in out
    code, out, _ = cli("add", str(fixtures["sdxl"]["single"]), "--name", "xl", "--license", "cc-by-nc-4.0", "--json")
    entry = json.loads(out)
    assert entry["kind"] == "sdxl" and entry["license"] == "cc-by-nc-4.0" and entry["license_source"] == "user"
    code, out, _ = cli("list")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "BASE", "SIZE", "HASH", "LICENSE"]
    assert any(line.split()[0] == "cat-model" and "sd1" in line for line in lines)
    assert any(line.startswith("xl ") and "cc-by-nc-4.0" in line and entry["short_hash"] in line for line in lines)
    code, out, _ = cli("show", "cat-model")
    assert "base model:  runwayml/stable-diffusion-v1-5" in out and "cats, tiny" in out
    assert "commercial use: yes" in out and "medical advice" in out  # OpenRAIL restrictions in plain words
    code, out, _ = cli("show", "cat-model", "--json")
    assert json.loads(out)["license_terms"]["id"] == "creativeml-openrail-m"
    code, out, _ = cli("add", str(carded))
    assert code == 2
    assert cli("remove", "cat-model")[0] == 0
    code, _, err = cli("show", "cat-model")
    assert code == 2 and "no model named" in err
    assert carded.exists()  # an in-place original is never deleted
    db = sqlite3.connect(home / "registry.sqlite3")
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_registered_name_loads_with_its_hash(cli, fixtures):
    cli("add", str(fixtures["sd2"]["folder"]), "--name", "two", "--license", "openrail++")
    m = load_pipeline("two")
    assert (m.name, m.kind, m.license) == ("two", "sd2", "openrail++")
    with Registry() as reg:
        assert m.sha256 == reg.get("two").sha256


@pytest.mark.parametrize("storage", ["--copy", "--link"])
def test_copy_and_link_store_inside_the_home(cli, fixtures, home, storage):
    code, out, _ = cli("add", str(fixtures["sd1"]["single"]), "--name", "stored", storage, "--json")
    entry = json.loads(out)
    assert code == 0 and entry["path"] == str(home / "models" / "stored.safetensors")
    assert load_pipeline("stored", config=fixtures["sd1"]["config"]).kind == "sd1"
    cli("remove", "stored", "--delete-files")
    assert not (home / "models" / "stored.safetensors").exists()
    assert fixtures["sd1"]["single"].exists()


def test_bundled_model_appears_with_its_licence(fixtures, tmp_path, monkeypatch, cli):
    bundled = tmp_path / "default_model"
    shutil.copytree(fixtures["sd1"]["folder"], bundled)
    tiny.card(bundled, "apache-2.0")
    monkeypatch.setattr("brushwork.models.registry.package_data", lambda *p: bundled)
    code, out, _ = cli("list")
    assert any(line.split()[:3] == ["default", "sd1", "sd1"] and "apache-2.0" in line for line in out.splitlines())
    assert cli("remove", "default")[0] == 2


# ---------------------------------------------------------------- names and paths


@pytest.mark.parametrize("bad", ["../evil", "/etc/passwd", "a/../../b", "..", ".hidden", "sub/name"])
def test_bad_names_are_refused(cli, fixtures, bad):
    code, _, err = cli("add", str(fixtures["sd1"]["single"]), "--name", bad)
    assert code == 2 and err.startswith("error: ")
    code, _, err = cli("show", bad)
    assert code == 2


@pytest.mark.parametrize("ref", ["../escape.safetensors", "/etc/passwd", "models/../../x"])
def test_server_style_resolution_refuses_escapes(ref):
    with Registry() as reg, pytest.raises(UnsafePath):
        resolve_model(ref, registry=reg, allow_paths=False)


def test_symlink_out_of_the_model_home_is_refused(fixtures, home):
    with Registry() as reg:
        link = reg.models_dir / "sneaky.safetensors"
        os.symlink(fixtures["sd1"]["single"], link)
        for allow_paths in (False, True):
            with pytest.raises(UnsafePath, match="outside"):
                resolve_model("sneaky.safetensors", registry=reg, allow_paths=allow_paths)
    with pytest.raises(UnsafePath):
        load_pipeline("sneaky.safetensors", allow_paths=False)


def test_files_dropped_into_the_home_resolve_by_name(fixtures, home):
    with Registry() as reg:
        shutil.copy(fixtures["sd1"]["single"], reg.models_dir / "dropped.safetensors")
        res = resolve_model("dropped.safetensors", registry=reg, allow_paths=False)
        assert res.path == (reg.models_dir / "dropped.safetensors").resolve()


def test_in_place_entry_refused_when_its_path_is_swapped(cli, fixtures, tmp_path):
    real = tmp_path / "real.safetensors"
    shutil.copy(fixtures["sd1"]["single"], real)
    cli("add", str(real), "--name", "swapme", "--no-hash")
    elsewhere = tmp_path / "elsewhere.safetensors"
    real.rename(elsewhere)
    os.symlink(elsewhere, real)
    with Registry() as reg, pytest.raises(UnsafePath, match="not the path that was added"):
        resolve_model("swapme", registry=reg)


# ---------------------------------------------------------------- licences


def test_licence_identifiers():
    assert normalize_license("CreativeML-OpenRAIL-M") == "creativeml-openrail-m"
    assert normalize_license(["openrail++"]) == "openrail++"
    assert normalize_license("llama2") == "other"
    assert normalize_license(None) == "unknown"
    assert "commercial use: no" in describe("cc-by-nc-4.0")


@pytest.mark.parametrize("lic", ["creativeml-openrail-m", "openrail++", "apache-2.0", "mit"])
def test_commercial_allowed(lic):
    check_commercial("m", lic)


@pytest.mark.parametrize("lic,words", [("cc-by-nc-4.0", "does not permit commercial use"),
                                       ("unknown", "cannot confirm"), ("other", "cannot confirm"),
                                       (None, "cannot confirm")])
def test_commercial_refused_naming_the_licence(lic, words):
    with pytest.raises(LicenseRefused) as err:
        check_commercial("m", lic)
    assert f"'{normalize_license(lic)}'" in str(err.value) and words in str(err.value)


def test_commercial_refuses_a_stacked_lora():
    with pytest.raises(LicenseRefused, match="LoRA 'anime-style' has licence 'cc-by-nc-4.0'"):
        check_commercial("base", "creativeml-openrail-m", loras=[("ok", "mit"), ("anime-style", "cc-by-nc-4.0")])


def test_load_with_commercial_refuses_before_loading(fixtures, carded, tmp_path):
    with pytest.raises(LicenseRefused, match="'unknown'"):
        load_pipeline(str(fixtures["sd1"]["folder"]), commercial=True)
    assert load_pipeline(str(carded), commercial=True).license == "creativeml-openrail-m"
    nc = tmp_path / "nc"
    shutil.copytree(fixtures["sd1"]["folder"], nc)
    tiny.card(nc, "cc-by-nc-4.0")
    with pytest.raises(LicenseRefused, match="cc-by-nc-4.0"):
        load_pipeline(str(nc), commercial=True)
