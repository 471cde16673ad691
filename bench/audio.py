"""Audio through the appliance vs the raw engines, interleaved in one run.

* Transcription: wall time of one file through ``POST /v1/inference/audio/transcribe``
  vs ``faster_whisper`` in this process (same model, same options, same file,
  decoding included on both sides). Aim: raw / appliance ≥ 0.95. A third leg
  posts straight to the worker's socket, to show what the gateway itself adds.
* Speech: time to the first byte of ``POST /v1/inference/audio/synthesize``
  vs the time Piper takes to synthesise the first sentence in this process.
  Aim: first byte ≤ 1.2 × first sentence. A third leg asks the worker's
  socket directly, to show what the gateway adds. With the tiny models the
  voice is not the 2 ms test voice but one built for this run
  (``--voice-hidden``/``--voice-layers``: dense layers over each phoneme),
  whose first sentence costs what a real medium Piper voice's does on a CPU
  (hundreds of ms); ``--voice-layers 0`` is the test voice.

Runs A, B, A, B… so that the machine's drift hits both sides alike; prints the
median of each, the ratio of the medians and the spread of the per-round ratios.

    .venv/bin/python bench/audio.py [--rounds 9] [--seconds 95] [--speech-only] [--catalogue models.toml]

Without ``--catalogue`` it uses the tiny models (``appliance tiny-models``).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import httpx
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from appliance.catalogue import load_catalogue  # noqa: E402
from appliance.tiny_models.audio import build_piper  # noqa: E402
from appliance.workers.transcription import decode, decode_options  # noqa: E402
from tests.conftest import catalogue_subset  # noqa: E402
from tests.support.appliance import start_appliance  # noqa: E402
from tests.support.audio import audio_file  # noqa: E402

TEXT = ("The appliance answers on the customer's own machine, and the first sentence of a long answer is spoken "
        "while the rest is still being made, so that a listener hears it at once. " * 3
        + "A second paragraph follows. It has short sentences. Each is spoken in turn. The end.")


def first_sentence_s(voice: object, speed: float = 1.0) -> float:
    from piper.config import SynthesisConfig

    config = SynthesisConfig(length_scale=voice.config.length_scale / speed)  # type: ignore[attr-defined]
    started = time.perf_counter()
    next(iter(voice.synthesize(TEXT, config)))  # type: ignore[attr-defined]
    return time.perf_counter() - started


def raw_transcribe_s(model: object, data: bytes, options: dict) -> float:
    started = time.perf_counter()
    audio = decode(io.BytesIO(data))
    segments, _info = model.transcribe(audio, **options)  # type: ignore[attr-defined]
    list(segments)
    return time.perf_counter() - started


def app_transcribe_s(client: httpx.Client, model: str, data: bytes, path: str, kind: str) -> float:
    started = time.perf_counter()
    response = client.post(path, data={"model": model, "response_format": "verbose_json"},
                           files={"file": (f"bench.{kind}", data, "application/octet-stream")})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def app_first_byte_s(client: httpx.Client, model: str, fmt: str, path: str = "/v1/inference/audio/synthesize",
                     ) -> float:
    started = time.perf_counter()
    with client.stream("POST", path,
                       json={"model": model, "input": TEXT, "voice": "alloy", "response_format": fmt}) as response:
        response.raise_for_status()
        elapsed = None
        for chunk in response.iter_raw():  # read to the end: the next round must not overlap this one
            if chunk and elapsed is None:
                elapsed = time.perf_counter() - started
    assert elapsed is not None, "no audio came back"
    return elapsed


def summary(name: str, appliance: list[float], raw: list[float], ratio_of: str) -> None:
    """Medians and bests of each side; the ratio per round (neighbours share the machine's drift) and its spread."""
    if ratio_of == "raw/appliance":
        ratios = sorted(r / a for a, r in zip(appliance, raw))
    else:
        ratios = sorted(a / r for a, r in zip(appliance, raw))
    print(f"{name}: appliance median {statistics.median(appliance) * 1000:.1f} ms (best {min(appliance) * 1000:.1f}), "
          f"raw median {statistics.median(raw) * 1000:.1f} ms (best {min(raw) * 1000:.1f}); {ratio_of} per round: "
          f"median {statistics.median(ratios):.3f}, spread {ratios[0]:.3f}–{ratios[-1]:.3f}; "
          f"extra time at the median {(statistics.median(appliance) - statistics.median(raw)) * 1000:+.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=95.0, help="length of the file to transcribe")
    parser.add_argument("--catalogue", type=Path, help="models.toml (default: the tiny models)")
    parser.add_argument("--whisper", default="openai/whisper-1")
    parser.add_argument("--tts", default="openai/tts-1")
    parser.add_argument("--format", default="pcm", help="speech format for the first-byte runs")
    parser.add_argument("--kind", default="mp3", help="file type to transcribe (mp3, wav, ogg, webm, m4a, flac)")
    parser.add_argument("--speech-only", action="store_true", help="skip the transcription legs")
    parser.add_argument("--voice-hidden", type=int, default=1024, help="width of the benchmark voice's layers")
    parser.add_argument("--voice-layers", type=int, default=10, help="layers of the benchmark voice (0: test voice)")
    args = parser.parse_args()

    catalogue_path = args.catalogue
    if catalogue_path is None:
        tiny = REPO / ".cache" / "tiny-models"
        subprocess.run([sys.executable, "-m", "appliance.cli", "tiny-models", str(tiny)], check=True,
                       capture_output=True)
        catalogue_path = tiny / "models.toml"
    catalogue = load_catalogue(catalogue_path)
    whisper, tts = catalogue.get(args.whisper), catalogue.get(args.tts)
    assert whisper is not None and tts is not None, "both models must be in the catalogue"

    from faster_whisper import WhisperModel
    from piper import PiperVoice

    from appliance.workers.speech import voice_files

    options = whisper.engine_options
    raw_model = None if args.speech_only else WhisperModel(
        str(whisper.path), device=options.get("device", "cpu"), compute_type=options.get("compute_type", "int8"),
        local_files_only=True)
    raw_options = decode_options(options)
    data = audio_file(args.seconds, args.kind, seed=3)
    print(f"file: {args.seconds:.0f} s {args.kind}, {len(data) / 1e6:.2f} MB; text: {len(TEXT)} characters; "
          f"{args.rounds} rounds, interleaved; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        subset = catalogue_subset(catalogue_path, [whisper.slug, tts.slug], state / "models.toml")
        if args.catalogue is None and args.voice_layers:
            use_benchmark_voice(subset, tts.slug, state / "bench-voice", args.voice_hidden, args.voice_layers)
        tts_path = next(table["path"] for table in tomllib.loads(subset.read_text())["model"]
                        if table["slug"] == tts.slug)
        voice = PiperVoice.load(voice_files(Path(tts_path))[0])
        with start_appliance(subset, state) as app:
            socket = next((state / "sockets").glob("*whisper*.sock"), None)
            tts_socket = next((state / "sockets").glob("*tts*.sock"), None)
            with httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {app.create_key()}"},
                              timeout=600) as client, \
                    httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://worker",
                                 timeout=600) as worker, \
                    httpx.Client(transport=httpx.HTTPTransport(uds=str(tts_socket)), base_url="http://worker",
                                 timeout=600) as tts_worker:
                gateway_path, worker_path = "/v1/inference/audio/transcribe", "/v1/audio/transcriptions"
                # Warm every side once (first calls allocate, page in weights, build resamplers).
                if not args.speech_only:
                    app_transcribe_s(client, whisper.slug, data, gateway_path, args.kind)
                    app_transcribe_s(worker, whisper.slug, data, worker_path, args.kind)
                    raw_transcribe_s(raw_model, data, raw_options)
                app_first_byte_s(client, tts.slug, args.format), first_sentence_s(voice)
                app_first_byte_s(tts_worker, tts.slug, args.format, "/v1/audio/speech")
                t_app, t_worker, t_raw, ttfb, ttfb_worker, first = [], [], [], [], [], []
                for _ in range(args.rounds):
                    if not args.speech_only:
                        t_app.append(app_transcribe_s(client, whisper.slug, data, gateway_path, args.kind))
                        t_raw.append(raw_transcribe_s(raw_model, data, raw_options))
                        t_worker.append(app_transcribe_s(worker, whisper.slug, data, worker_path, args.kind))
                    ttfb.append(app_first_byte_s(client, tts.slug, args.format))
                    first.append(first_sentence_s(voice))
                    ttfb_worker.append(app_first_byte_s(tts_worker, tts.slug, args.format, "/v1/audio/speech"))
    if not args.speech_only:
        summary("transcription", t_app, t_raw, "raw/appliance")
        summary("transcription, worker socket direct (no gateway)", t_worker, t_raw, "raw/appliance")
    summary(f"speech first byte ({args.format})", ttfb, first, "first-byte/first-sentence")
    summary(f"speech first byte ({args.format}), worker socket direct", ttfb_worker, first,
            "first-byte/first-sentence")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def use_benchmark_voice(catalogue: Path, slug: str, where: Path, hidden: int, layers: int) -> None:
    """Point ``slug`` of ``catalogue`` at a random-weight voice of realistic cost, built here (never shipped)."""
    build_piper(where, hidden=hidden, layers=layers)
    tables = tomllib.loads(catalogue.read_text())
    for table in tables["model"]:
        if table["slug"] == slug:
            table["path"] = str(where)
    catalogue.write_text(tomli_w.dumps(tables))
    print(f"speech: a benchmark voice of {layers} dense layers {hidden} wide per phoneme (random weights)")


if __name__ == "__main__":
    main()
