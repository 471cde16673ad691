"""Tiny audio models: a random-weight Whisper in CTranslate2 form, and a random-weight Piper voice.

Both load through the very calls production uses (``WhisperModel(path)``,
``PiperVoice.load(path)``); only the weights are meaningless, so the Whisper
transcribes to noise text and the Piper voice speaks noise of the right length.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from appliance.tiny_models.registry import TinyModel

# faster-whisper finds the timestamp tokens right after <|notimestamps|>, so the order matters.
WHISPER_SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                    "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
TIMESTAMPS = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]

_CORPUS = (
    "hello world the quick brown fox jumps over the lazy dog this is a test of the appliance "
    "speech to text and text to speech one two three four five six seven eight nine ten "
    "good morning good evening thank you very much what time is it the weather is fine today"
).split()


def build_whisper(out: Path, seed: int = 0) -> None:
    import ctranslate2
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizerFast)

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bpe = ByteLevelBPETokenizer()
        # Trained with the whole byte alphabet, so any text (and faster-whisper's " -" probes) encodes.
        bpe.train_from_iterator([" ".join(_CORPUS)] * 4, vocab_size=400, min_frequency=1, show_progress=False)
        bpe.save_model(str(work))
        # Specials, then timestamps, appended in order after the byte-level vocabulary.
        bpe.add_special_tokens(WHISPER_SPECIALS)
        bpe.add_tokens(TIMESTAMPS)
        tokenizer = WhisperTokenizerFast(tokenizer_object=bpe._tokenizer, unk_token="<|endoftext|>",
                                         bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                         pad_token="<|endoftext|>",
                                         additional_special_tokens=WHISPER_SPECIALS[1:])
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in WHISPER_SPECIALS}
        order = [ids[token] for token in WHISPER_SPECIALS]
        assert order == sorted(order) and order[-1] + 1 == tokenizer.convert_tokens_to_ids(TIMESTAMPS[0]), order
        vocab_size = len(tokenizer)

        config = WhisperConfig(
            vocab_size=vocab_size, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
            max_source_positions=1500, max_target_positions=448,
            pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
            decoder_start_token_id=ids["<|startoftranscript|>"], suppress_tokens=[], begin_suppress_tokens=[],
        )
        model = WhisperForConditionalGeneration(config)
        model.generation_config = GenerationConfig(
            decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"],
            pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
            no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=False,
            lang_to_id={"<|en|>": ids["<|en|>"]}, task_to_id={"transcribe": ids["<|transcribe|>"],
                                                            "translate": ids["<|translate|>"]},
            alignment_heads=[[1, 0], [1, 1]], suppress_tokens=[], begin_suppress_tokens=[ids["<|endoftext|>"]],
            max_length=448,
        )
        hf_dir = work / "hf"
        feature_extractor = WhisperFeatureExtractor(feature_size=80)
        model.save_pretrained(hf_dir)
        WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(hf_dir)
        feature_extractor.save_pretrained(hf_dir)  # the converter copies preprocessor_config.json from here
        tokenizer.save_pretrained(hf_dir)
        if out.exists():
            shutil.rmtree(out)
        converter = ctranslate2.converters.TransformersConverter(
            str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"])
        converter.convert(str(out), quantization="int8")


def whisper_catalogue(path: Path) -> list[dict[str, Any]]:
    return [{
        "slug": "openai/whisper-1",
        "display_name": "Tiny Whisper (random weights, English only)",
        "aliases": ["whisper-1", "scailabs/tiny-whisper"],  # "whisper-1": what OpenAI SDK examples send
        "modality": "transcription",
        "engine": "faster-whisper",
        "path": str(path),
        "load": "startup",
        # Random weights never decode "well", so the fallback ladder would always run to the end: keep it short.
        "engine_options": {"beam_size": 1, "temperature_fallback": False, "max_new_tokens": 64},
    }]


# --- Piper -----------------------------------------------------------------------------------

PIPER_VOICE = "tiny-en"
PIPER_SAMPLE_RATE = 22050
HOP = 256  # samples per phoneme id at length_scale 1, as real Piper voices' hop length
PIPER_SPEAKERS = {"ada": 0, "bo": 1}


def _hidden_stack(rng: Any, dim: int, hidden: int, layers: int) -> tuple[list[Any], list[Any], str, int]:
    """``layers`` MatMul + Tanh layers ``hidden`` wide over each phoneme: the knob that makes a voice cost more."""
    import numpy as np
    from onnx import helper, numpy_helper

    weights, nodes, name, width = [], [], "emb", dim
    for layer in range(layers):
        matrix = rng.normal(size=(width, hidden)).astype(np.float32) / float(np.sqrt(width))
        weights.append(numpy_helper.from_array(matrix, f"w{layer}"))
        nodes += [helper.make_node("MatMul", [name, f"w{layer}"], [f"h{layer}_lin"]),
                  helper.make_node("Tanh", [f"h{layer}_lin"], [f"h{layer}"])]
        name, width = f"h{layer}", hidden
    return weights, nodes, name, width


def _piper_graph(num_symbols: int, num_speakers: int, seed: int, hidden: int = 0, layers: int = 0) -> Any:
    """input [1, N] ids → a waveform [1, 1, round(N·HOP·length_scale)]: speed changes the length, as in Piper.

    ``hidden``/``layers`` put a stack of dense layers between the phoneme
    embedding and the waveform (none in the test voice): a voice whose cost
    grows like a real one's, for benchmarks.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    dim = 16
    table = numpy_helper.from_array(rng.normal(size=(num_symbols, dim)).astype(np.float32), "table")
    stack, stack_nodes, features, width = _hidden_stack(rng, dim, hidden, layers)
    gain = 0.5 / float(np.sqrt(width / dim))  # keeps a deep voice's waveform as loud as the test voice's
    frames = numpy_helper.from_array(rng.normal(size=(width, HOP)).astype(np.float32) * gain, "frames")
    voices = numpy_helper.from_array(rng.uniform(0.5, 1.5, size=(num_speakers, 1)).astype(np.float32), "voices")
    consts = [
        helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("idx1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("out_shape", TensorProto.INT64, [3], [1, 1, -1]),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "input"], ["emb"]),  # [1, N, dim]
        *stack_nodes,  # [1, N, hidden]
        helper.make_node("MatMul", [features, "frames"], ["wave3"]),  # [1, N, HOP]
        helper.make_node("Gather", ["voices", "sid"], ["gain"]),  # [1, 1]
        helper.make_node("Mul", ["wave3", "gain"], ["voiced"]),
        helper.make_node("Tanh", ["voiced"], ["bounded"]),
        helper.make_node("Reshape", ["bounded", "flat"], ["wave"]),  # [N * HOP]
        # Stretch by length_scale: nearest-neighbour resampling of the waveform.
        helper.make_node("Gather", ["scales", "idx1"], ["ls1"]),
        helper.make_node("Squeeze", ["ls1"], ["length_scale"]),
        helper.make_node("Shape", ["wave"], ["n_int"]),
        helper.make_node("Cast", ["n_int"], ["n_float1"], to=TensorProto.FLOAT),
        helper.make_node("Squeeze", ["n_float1"], ["n_float"]),
        helper.make_node("Mul", ["n_float", "length_scale"], ["stretched"]),
        helper.make_node("Range", ["zero", "stretched", "one"], ["positions"]),
        helper.make_node("Div", ["positions", "length_scale"], ["source"]),
        helper.make_node("Floor", ["source"], ["source_floor"]),
        helper.make_node("Cast", ["source_floor"], ["source_idx"], to=TensorProto.INT64),
        helper.make_node("Gather", ["wave", "source_idx"], ["resampled"]),
        helper.make_node("Reshape", ["resampled", "out_shape"], ["output"]),
    ]
    inputs = [
        helper.make_tensor_value_info("input", TensorProto.INT64, [1, "N"]),
        helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
        helper.make_tensor_value_info("sid", TensorProto.INT64, [1]),
    ]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "samples"])]
    graph = helper.make_graph(nodes, "tiny_piper", inputs, outputs,
                              initializer=[table, *stack, frames, voices, *consts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="appliance")
    model.ir_version = 8
    return model


def build_piper(out: Path, seed: int = 0, hidden: int = 0, layers: int = 0) -> None:
    import onnx
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    num_symbols = max(i for ids in DEFAULT_PHONEME_ID_MAP.values() for i in ids) + 1
    model = _piper_graph(num_symbols, len(PIPER_SPEAKERS), seed, hidden, layers)
    onnx.checker.check_model(model)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    onnx.save(model, str(out / f"{PIPER_VOICE}.onnx"))
    config = {
        "audio": {"sample_rate": PIPER_SAMPLE_RATE, "quality": "tiny"},
        "espeak": {"voice": "en-us"},
        "phoneme_type": "espeak",
        "num_symbols": num_symbols,
        "num_speakers": len(PIPER_SPEAKERS),
        "speaker_id_map": PIPER_SPEAKERS,
        "inference": {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8},
        "phoneme_id_map": DEFAULT_PHONEME_ID_MAP,
        "language": {"code": "en_US"},
        "dataset": PIPER_VOICE,
    }
    (out / f"{PIPER_VOICE}.onnx.json").write_text(json.dumps(config, ensure_ascii=False, indent=1))


def piper_catalogue(path: Path) -> list[dict[str, Any]]:
    return [{
        "slug": "openai/tts-1",
        "display_name": "Tiny Piper voice (random weights, two speakers)",
        "aliases": ["tts-1", "scailabs/tiny-tts"],
        "modality": "speech",
        "engine": "piper",
        "path": str(path),
        "load": "startup",
        # OpenAI's voice names onto the tiny voice's two speakers ("voice" or "voice:speaker").
        "engine_options": {"voices": {
            "alloy": f"{PIPER_VOICE}:ada", "echo": f"{PIPER_VOICE}:bo", "fable": f"{PIPER_VOICE}:ada",
            "onyx": f"{PIPER_VOICE}:bo", "nova": f"{PIPER_VOICE}:ada", "shimmer": f"{PIPER_VOICE}:bo",
        }},
    }]


WHISPER = TinyModel(name="whisper-tiny", version="1", build=build_whisper, catalogue=whisper_catalogue)
PIPER = TinyModel(name="piper-tiny", version="1", build=build_piper, catalogue=piper_catalogue)
