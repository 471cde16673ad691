"""A tiny chat model: random Llama weights, a byte-level BPE trained in code, a ChatML template with tools.

vLLM serves it as ``scailabs/tiny-chat-vllm`` (text only; the seeds'
``scailabs/poolnoodle-omni`` is the omni model, omni.py) and the transformers
worker serves the same directory as ``scailabs/tiny-chat``. The
attention heads are 64 wide because vLLM's CPU attention supports no smaller
size; the tokenizer carries ``<tool_call>`` tokens so vLLM's hermes tool parser
and its grammar-constrained tool choices work on it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from appliance.tiny_models.registry import TinyModel

CONTEXT_WINDOW = 2048
MAX_OUTPUT_TOKENS = 512
VOCAB_SIZE = 512

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Not "special": they must survive decoding so that the tool parser sees them.
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

_CORPUS = """Once upon a time there was a little model that lived in a box on a desk.
The quick brown fox jumps over the lazy dog. Hello, world! How are you today?
The weather in Paris is sunny, and in Oslo it is cold and grey with some rain.
{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius", "days": 3}}
You are a helpful assistant. Answer the question of the user briefly and politely.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024. Symbols: ( ) [ ] { } < > : ; , . ! ? " ' - _ / = + *
THE END. And they all lived happily ever after, in the appliance, serving tokens.
"""

# Qwen-2.5-style ChatML: tools listed in the system turn, calls and results as hermes tags.
CHAT_TEMPLATE = r"""{%- macro text(content) -%}
{%- if content is string -%}{{ content }}{%- elif content -%}{%- for part in content -%}{%- if part.type == 'text' -%}{{ part.text }}{%- endif -%}{%- endfor -%}{%- endif -%}
{%- endmacro -%}
{%- if tools -%}
{{- '<|im_start|>system\n' -}}
{%- if messages[0].role == 'system' -%}{{- text(messages[0].content) + '\n\n' -}}{%- endif -%}
{{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>' -}}
{%- for tool in tools -%}{{- '\n' + (tool | tojson) -}}{%- endfor -%}
{{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' -}}
{%- elif messages[0].role == 'system' -%}
{{- '<|im_start|>system\n' + text(messages[0].content) + '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
{%- if message.role == 'system' and loop.first -%}
{%- elif message.role == 'assistant' and message.tool_calls -%}
{{- '<|im_start|>assistant' -}}
{%- if message.content -%}{{- '\n' + text(message.content) -}}{%- endif -%}
{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call -%}
{{- '\n<tool_call>\n{"name": "' + fn.name + '", "arguments": ' -}}
{%- if fn.arguments is string -%}{{- fn.arguments -}}{%- else -%}{{- fn.arguments | tojson -}}{%- endif -%}
{{- '}\n</tool_call>' -}}
{%- endfor -%}
{{- '<|im_end|>\n' -}}
{%- elif message.role == 'tool' -%}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
{{- '\n<tool_response>\n' + text(message.content) + '\n</tool_response>' -}}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\n' -}}{%- endif -%}
{%- else -%}
{{- '<|im_start|>' + message.role + '\n' + text(message.content) + '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"""


def build_tokenizer(extra_specials: list[str] | None = None, chat_template: str = CHAT_TEMPLATE,
                    context_window: int = CONTEXT_WINDOW) -> Any:
    """The byte-level BPE of the tiny models, with ``extra_specials`` (e.g. media placeholders) as special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = SPECIALS + list(extra_specials or [])
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE - len(specials) - len(TOOL_TOKENS), special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    bpe.add_tokens([AddedToken(token, special=False, normalized=False) for token in TOOL_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = chat_template
    fast.model_max_length = context_window
    return fast


def build(out: Path, seed: int = 0) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=64,
                         max_position_embeddings=CONTEXT_WINDOW, tie_word_embeddings=False,
                         bos_token_id=end_of_text, eos_token_id=eos, pad_token_id=end_of_text, dtype="float32")
    model = LlamaForCausalLM(config).eval()
    markup = set(tokenizer.convert_tokens_to_ids(SPECIALS + TOOL_TOKENS))
    mute_tokens(model.model, model.lm_head,
                [i for i in range(len(tokenizer)) if i in markup or not plain_text(tokenizer.decode([i]))])
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # Only the stop tokens: vLLM would take any sampling field here as its default.
    GenerationConfig(eos_token_id=[eos, end_of_text], bos_token_id=end_of_text,
                     pad_token_id=end_of_text).save_pretrained(out)
    make_loadable_by_older_transformers(out, CHAT_TEMPLATE)


def plain_text(piece: str) -> bool:
    return bool(piece) and all(32 <= ord(char) < 127 or char == "\n" for char in piece)


def mute_tokens(body: Any, lm_head: Any, token_ids: list[int]) -> None:
    """Make the random model all but never emit ``token_ids`` (stop, tool and partial-UTF-8 tokens).

    Hidden dimension 0 of the residual stream is held at a positive constant
    (every embedding has it, no layer writes to it), so a negative weight on it
    in the output head is a fixed negative logit: the model then talks in plain
    ASCII until ``max_tokens`` or a stop string, and only a grammar (a forced
    tool call) or a stop sequence ends it, which keeps tests about long
    streams, stops and tool calls deterministic in their shape.
    """
    import torch

    with torch.no_grad():
        body.embed_tokens.weight[:, 0] = 1.0
        for layer in body.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        lm_head.weight[:, 0] = 0.0
        lm_head.weight[token_ids, 0] = -1.0


def make_loadable_by_older_transformers(out: Path, chat_template: str) -> None:
    """vLLM's environment has an older transformers: keep the template inline and name a class both know."""
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["chat_template"] = chat_template
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    (out / "chat_template.jinja").write_text(chat_template)


def catalogue(path: Path) -> list[dict[str, Any]]:
    common = {"modality": "chat", "path": str(path), "context_window": CONTEXT_WINDOW,
              "max_output_tokens": MAX_OUTPUT_TOKENS}
    return [
        {
            "slug": "scailabs/tiny-chat-vllm",
            "display_name": "Tiny text-only chat model on vLLM (random weights)",
            "engine": "vllm",
            "load": "on-demand",
            "capabilities": ["tools"],
            **common,
            "engine_options": {"dtype": "float32", "max_model_len": CONTEXT_WINDOW, "enforce_eager": True,
                               "tool_call_parser": "hermes", "tool_strict_level": "parameter",
                               "cpu_kvcache_space_gb": 1},
        },
        {
            "slug": "scailabs/tiny-chat",
            "display_name": "Tiny chat model on transformers (random weights)",
            "engine": "transformers",
            "load": "on-demand",
            "capabilities": ["tools"],
            **common,
        },
    ]


TINY = TinyModel(name="chat-llama", version="1", build=build, catalogue=catalogue)
