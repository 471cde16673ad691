"""A CrossEncoder's scores for query–document pairs, the next forward batch tokenized while this one runs.

``CrossEncoder.predict`` tokenizes a batch, runs it, then tokenizes the next:
the tokenizer (Rust, off the GIL) and the model wait for each other. Here a
thread of its own tokenizes batch k+1 while the model runs batch k, as
Infinity does. Pairs are sorted by length first, as ``predict`` sorts them,
so that each batch pads little; the scores are ``predict``'s, pair for pair.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

Pair = tuple[str, str]


class PairScorer:
    def __init__(self, model: Any, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size
        self._tokenizer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")  # the model's tokenizer's

    def _features(self, pairs: list[Pair]) -> dict[str, Any]:
        from sentence_transformers.util import batch_to_device

        return batch_to_device(self.model.preprocess(pairs), self.model.device)  # type: ignore[no-any-return]

    def __call__(self, pairs: list[Pair]) -> np.ndarray:
        import torch

        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        batches = [order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        scores = np.empty(len(pairs), dtype=np.float32)
        if not batches:
            return scores
        self.model.eval()
        ahead: Future[dict[str, Any]] = self._tokenizer.submit(self._features, [pairs[i] for i in batches[0]])
        for number, batch in enumerate(batches):
            features = ahead.result()
            if number + 1 < len(batches):
                ahead = self._tokenizer.submit(self._features, [pairs[i] for i in batches[number + 1]])
            with torch.inference_mode():
                logits = self.model(features)["scores"]
                if torch.is_floating_point(logits) and torch.finfo(logits.dtype).bits < 32:
                    logits = logits.float()  # half precision ties; compare in float32, as predict does
                batch_scores = self.model.activation_fn(logits) if self.model.activation_fn is not None else logits
            scores[batch] = batch_scores.reshape(len(batch)).float().cpu().numpy()
        return scores
