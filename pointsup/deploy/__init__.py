"""Deployment: exporting trained models (:mod:`pointsup.deploy.export`) and running them with
onnxruntime alone (:mod:`pointsup.deploy.onnx_runner`). docs/deployment.md describes both."""
