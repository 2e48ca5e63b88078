"""Writes timm_inception_v4.json: the names and shapes of the tensors of timm's
``inception_v4`` state dict (the layout of ``inception_v4.tf_in1k``'s model.safetensors),
which tests/models/test_inception_v4.py checks the converter against without timm.

Run in an environment with timm and PyTorch (no download: random weights):

    python tests/golden/timm_inception_v4.py > tests/golden/timm_inception_v4.json
"""
import json

import timm
import torch

model = timm.create_model("inception_v4", pretrained=False)
rows = [f"  {json.dumps(name)}: {json.dumps(list(tensor.shape))}"
        for name, tensor in model.state_dict().items()]
head = {"model": "timm inception_v4 (checkpoint inception_v4.tf_in1k)",
        "made_by": "python tests/golden/timm_inception_v4.py > tests/golden/timm_inception_v4.json",
        "timm": timm.__version__, "torch": torch.__version__.split("+")[0],
        "parameters": sum(p.numel() for p in model.parameters())}
print(json.dumps(head)[:-1] + ',\n "tensors": {\n' + ",\n".join(rows) + "\n }\n}")
