"""Model servers: backends (transformers/torch, Triton) behind the ModelService contract."""
