"""Small types and helpers every stage shares: the artifact and its cases, onnxruntime sessions, atomic writes."""
