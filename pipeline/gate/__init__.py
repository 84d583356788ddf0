"""Stage 2, the gate: compare onnxruntime with the original, task rules, tree flips, runtime compatibility, drift, latency, diagnosis."""
