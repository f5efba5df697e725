"""The shipped ONNX graphs and their manifests (package data: icam*.onnx, fcpm*.onnx, *.json)."""
