"""A text-generation stand-in with an answer a test can predict: the prompt's words
upper-cased, cut to ``max_tokens`` words. No model runtime, so it loads in a moment."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            prompts = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy()
            budgets = pb_utils.get_input_tensor_by_name(request, "max_tokens").as_numpy()
            replies = [
                " ".join(prompt[0].decode("utf-8").upper().split()[: int(budget[0])]).encode()
                for prompt, budget in zip(prompts, budgets, strict=True)
            ]
            output = np.array(replies, dtype=np.object_).reshape(len(replies), 1)
            tensor = pb_utils.Tensor("text_output", output)
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
