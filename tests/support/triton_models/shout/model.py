"""A text-generation stand-in with an answer a test can predict: the prompt's words
upper-cased, cut to ``max_tokens`` words; a word counts as a token. No model runtime, so it
loads in a moment."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            prompts = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy()
            budgets = pb_utils.get_input_tensor_by_name(request, "max_tokens").as_numpy()
            words = [prompt[0].decode("utf-8").upper().split() for prompt in prompts]
            replies = [w[: int(b[0])] for w, b in zip(words, budgets, strict=True)]
            text = [" ".join(reply).encode() for reply in replies]
            outputs = [
                pb_utils.Tensor("text_output", np.array(text, dtype=np.object_).reshape(-1, 1)),
                pb_utils.Tensor("input_tokens", _counts(words)),
                pb_utils.Tensor("output_tokens", _counts(replies)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses


def _counts(rows):
    return np.array([[len(row)] for row in rows], dtype=np.int32)
