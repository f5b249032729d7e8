from torch_tensorrt.dynamo import runtime  # noqa: F401
