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


REMOTE = 'slug = "acme/llama"\nmodality = "chat"\nengine = "remote"\n'
VLLM = 'slug = "x"\nmodality = "chat"\nengine = "vllm"\npath = "."\n'


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
    ('slug = "bad slug!"\nmodality = "chat"\nengine = "vllm"\npath = "."', "field 'slug'"),    (REMOTE, "field '(entry)': Value error, a remote model needs 'url'"),
    (REMOTE + 'url = "ftp://10.0.0.5/v1"', "field 'url': Value error, 'ftp://10.0.0.5/v1' is not an http:// or https://"),
    (REMOTE + 'url = ["http://a:8000/v1", "http://a:8000/v1"]', "field 'url': Value error, a URL is listed twice"),
    (REMOTE + 'url = "http://user:secret@a:8000/v1"', "carries credentials; use api_key_env"),
    (REMOTE + 'url = "http://a:8000/v1"\nreplicas = 2', "'replicas' is for local engines"),
    (REMOTE + 'url = "http://a:8000/v1"\napi_key_env = "APPLIANCE_TEST_UNSET_KEY"',
     "field 'api_key_env': the environment variable APPLIANCE_TEST_UNSET_KEY is not set"),
    (REMOTE + 'url = "http://a:8000/v1"\n[model.engine_options]\ncolour = "red"',
     "field 'engine_options.colour': Extra inputs are not permitted"),
    ('slug = "x"\nmodality = "chat"\nengine = "vllm"\npath = "."\nreplicas = 0', "field 'replicas'"),
    ('slug = "x"\nmodality = "chat"\nengine = "vllm"\npath = "."\nurl = "http://a/v1"', "'url' is for engine 'remote'"),
    ('slug = "x"\nmodality = "chat"\nengine = "vllm"\npath = "."\n[model.engine_options]\nmax_model_length = 10',
     "field 'engine_options.max_model_length': Extra inputs are not permitted"),
    ('slug = "x"\nmodality = "image"\nengine = "diffusers"\npath = "."\n[model.engine_options]\nsteps = {ultra = 9}',
     "field 'engine_options.steps.ultra"),
    ('slug = "x"\nmodality = "chat"\nengine = "llama.cpp"\npath = "."', "field 'engine'"),
    ('slug = "x"\nmodality = "rerank"\nengine = "vllm"\npath = "."', "engine 'vllm' cannot serve modality 'rerank'"),
    ('slug = "x"\nmodality = "rerank"\nengine = "sentence-transformers"\npath = "."\n[model.engine_options]\n'
     'max_tokens_per_input = 512', "field 'engine_options.max_tokens_per_input': Extra inputs are not permitted"),
    ('slug = "x"\nmodality = "embedding"\nengine = "sentence-transformers"\npath = "."\n[model.engine_options]\n'
     'max_documents = 10', "field 'engine_options.max_documents': Extra inputs are not permitted"),
    (VLLM + 'capabilities = ["smell"]', "field 'capabilities[0]': Input should be 'vision', 'audio_input' or 'tools'"),
    (VLLM + 'capabilities = ["vision", "vision"]', "field 'capabilities': Value error, a capability is listed twice"),
    ('slug = "x"\nmodality = "embedding"\nengine = "sentence-transformers"\npath = "."\ncapabilities = ["vision"]',
     "field 'capabilities': Value error, capabilities are for chat models; a embedding model has none"),
    ('slug = "x"\nmodality = "chat"\nengine = "transformers"\npath = "."\ncapabilities = ["tools", "vision"]',
     "field 'capabilities': Value error, engine 'transformers' cannot give a model 'vision'"),
    (VLLM + 'capabilities = ["tools"]', "'tools' on vLLM needs engine_options.tool_call_parser"),
    (VLLM + 'capabilities = ["audio_input"]\n[model.engine_options]\nlimit_mm_per_prompt = {image = 2, audio = 0}',
     "'audio_input', but engine_options.limit_mm_per_prompt allows no audio"),
    ('slug = "x"\nmodality = "chat"\nengine = "vllm"\npath = "."\nprice = {input_per_million = -0.5}',
     "field 'price.input_per_million': Input should be greater than or equal to 0"),
    ('slug = "x"\nmodality = "chat"\nengine = "vllm"\npath = "."\nprice = {per_token = 1}',
     "field 'price.per_token': Extra inputs are not permitted"),
])
def test_a_broken_entry_names_the_file_the_model_and_the_field(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, f"[[model]]\n{body}\n")
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    assert str(caught.value).startswith(str(path))
    assert expected in str(caught.value)


def test_a_chat_model_lists_what_it_takes_beyond_text(tmp_path: Path) -> None:
    catalogue = load_catalogue(write(tmp_path, f"""
[[model]]
{VLLM}capabilities = ["vision", "audio_input", "tools"]
[model.engine_options]
tool_call_parser = "hermes"
limit_mm_per_prompt = {{image = 4, audio = 2}}

[[model]]
slug = "plain"
modality = "chat"
engine = "transformers"
path = "."
"""))
    assert catalogue.get("x").capabilities == ("vision", "audio_input", "tools")  # type: ignore[union-attr]
    assert catalogue.get("plain").capabilities == ()  # type: ignore[union-attr]


def test_a_remote_model_takes_one_url_or_several_and_its_remote_name(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_BACKEND_KEY", "secret")
    catalogue = load_catalogue(write(tmp_path, f"""
[[model]]
{REMOTE}url = ["http://10.0.0.5:8000/v1/", "https://10.0.0.6/v1"]
remote_model = "meta-llama/Llama-3.1-70B-Instruct"
api_key_env = "ACME_BACKEND_KEY"

[[model]]
slug = "acme/embed"
modality = "embedding"
engine = "remote"
url = "http://10.0.0.7:8000/oai/v1"
"""))
    llama, embed = catalogue.get("acme/llama"), catalogue.get("acme/embed")
    assert llama is not None and embed is not None
    assert llama.url == ("http://10.0.0.5:8000/v1", "https://10.0.0.6/v1")
    assert llama.served_model == "meta-llama/Llama-3.1-70B-Instruct"
    assert embed.url == ("http://10.0.0.7:8000/oai/v1",) and embed.served_model == "acme/embed"


def test_every_engine_of_the_registry_has_its_options_checked() -> None:
    from appliance.engines.registry import ENGINES

    for spec in ENGINES.values():
        assert spec.options.model_config.get("extra") == "forbid", spec.name
        assert spec.local == (spec.name != "remote")
        for modality, worker in spec.modality_workers.items():
            assert modality in spec.modalities and worker.options.model_config.get("extra") == "forbid", spec.name


def test_sentence_transformers_reranks_with_a_worker_options_and_files_of_its_own(tmp_path: Path) -> None:
    from appliance.engines.registry import engine_spec
    from appliance.supervisor.launch import worker_command

    (tmp_path / "m").mkdir()
    catalogue = load_catalogue(write(tmp_path, """
[[model]]
slug = "baai/bge-reranker-v2-m3"
aliases = ["rerank-v3.5"]
modality = "rerank"
engine = "sentence-transformers"
path = "m"
[model.engine_options]
max_documents = 200
max_length = 1024

[[model]]
slug = "acme/rerank"
modality = "rerank"
engine = "remote"
url = "http://10.0.0.8:7997"
"""))
    local, remote = catalogue.get("rerank-v3.5"), catalogue.get("acme/rerank")
    assert local is not None and remote is not None and local.api_modality == remote.api_modality == "rerank"
    assert "appliance.workers.rerank" in worker_command(local, tmp_path / "w.sock")
    assert engine_spec("sentence-transformers", "rerank").required_files == ("config.json",)
    assert engine_spec("sentence-transformers", "embedding").worker_module == "appliance.workers.embeddings"
    assert engine_spec("sentence-transformers").required_files == ("modules.json",)


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
    reranker = catalogue.get("rerank-v3.5")
    assert reranker is not None and reranker.modality == "rerank"
