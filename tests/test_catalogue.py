"""The catalogue: models.toml parsed into typed entries; a broken one is refused with a precise sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.catalogue import CatalogueError, load_catalogue

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_an_entry_is_typed_and_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    catalogue = load_catalogue(write(tmp_path, """
[[model]]
slug = "openai/text-embedding-3-small"
aliases = ["scailabs/embed"]
modality = "embedding"
engine = "sentence-transformers"
path = "m"
load = "startup"
gpu_memory_gb = 2
[model.engine_options]
max_batch_size = 32
"""))
    entry = catalogue.get("scailabs/embed")
    assert entry is not None and entry.slug == "openai/text-embedding-3-small"
    assert entry.path == (tmp_path / "m").resolve()
    assert entry.load == "startup" and entry.gpu_memory_gb == 2
    assert entry.engine_options == {"max_batch_size": 32}
    assert catalogue.get("nope") is None


@pytest.mark.parametrize(("body", "expected"), [
    ('slug = "x"\nmodality = "embedding"\nengine = "sentence-transformers"\npath = "missing"',
     "model 'x' (entry 1): field 'path': no such file or directory"),
    ('slug = "x"\nmodality = "embedding"\nengine = "diffusers"\npath = "."',
     "model 'x' (entry 1): field '(entry)': Value error, engine 'diffusers' cannot serve modality 'embedding'"),
    ('slug = "x"\nmodality = "sound"\nengine = "piper"\npath = "."', "model 'x' (entry 1): field 'modality'"),
    ('slug = "x"\nmodality = "chat"\nengine = "vllm"', "field '(entry)': Value error, engine 'vllm' needs 'path'"),
    ('slug = "x"\nmodality = "chat"\nengine = "vllm"\npath = "."\nload = "later"', "field 'load'"),
    ('slug = "x"\nmodality = "chat"\nengine = "vllm"\npath = "."\ngpu_memory_gb = -1', "field 'gpu_memory_gb'"),
    ('slug = "x"\nmodality = "chat"\nengine = "vllm"\npath = "."\ncolour = "red"', "field 'colour': Extra inputs"),
    ('slug = "bad slug!"\nmodality = "chat"\nengine = "vllm"\npath = "."', "field 'slug'"),
])
def test_a_broken_entry_names_the_file_the_model_and_the_field(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, f"[[model]]\n{body}\n")
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    assert str(caught.value).startswith(str(path))
    assert expected in str(caught.value)


def test_a_name_used_twice_is_refused(tmp_path: Path) -> None:
    entry = 'modality = "chat"\nengine = "vllm"\npath = "."\n'
    path = write(tmp_path, f'[[model]]\nslug = "a"\n{entry}[[model]]\nslug = "b"\naliases = ["a"]\n{entry}')
    with pytest.raises(CatalogueError, match="model 'b': name 'a' is already used by 'a'"):
        load_catalogue(path)


def test_invalid_toml_and_a_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="not valid TOML"):
        load_catalogue(write(tmp_path, "[[model]\n"))
    with pytest.raises(CatalogueError, match="no such catalogue file"):
        load_catalogue(tmp_path / "absent.toml")


def test_the_shipped_gpu_catalogue_is_valid() -> None:
    catalogue = load_catalogue(REPO / "models.toml", check_paths=False)
    assert catalogue.get("openai/text-embedding-3-small") is not None
