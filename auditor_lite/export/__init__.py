"""Export: checkpoint -> model directory (ONNX graphs, tokenizer, manifest) and TensorRT engines.

See docs/export.md. The modules that drive the exporters (``exporter``, ``model_dir``,
``text_encoder``, ``onnx_config``, ``wrappers``) need the train extra (torch, optimum);
``contract``, ``trt_checks`` and ``tensorrt`` need only onnx (and TensorRT to build engines).
"""
