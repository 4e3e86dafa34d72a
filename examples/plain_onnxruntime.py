# plain_onnxruntime.py MODEL.onnx DATA.csv: a classifier from `build export`, run with numpy + onnxruntime only
import csv, json, sys
import numpy as np, onnxruntime as ort
sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta, inp = sess.get_modelmeta().custom_metadata_map, sess.get_inputs()[0]
columns = json.loads(meta["builder.input_columns"])[inp.name]  # where each CSV column goes, one-hot included
rows = list(csv.DictReader(open(sys.argv[2], newline="", encoding="utf-8-sig")))
x = np.zeros((len(rows), sum(c["width"] for c in columns)), np.float32)
for i, row in enumerate(rows):
    for c in columns:
        value = row[c["column"]].strip()
        if c["kind"] == "category":
            x[i, c["at"] + c["categories"].index(value)] = 1.0
        else:
            x[i, c["at"]] = float(value)
out = sess.run(None, {inp.name: x})[0]
if json.loads(meta["builder.output_kinds"])[sess.get_outputs()[0].name] == "logits":
    out = np.exp(out - out.max(axis=1, keepdims=True))
    out /= out.sum(axis=1, keepdims=True)  # softmax: logits -> probabilities
labels = json.loads(meta["builder.class_labels"])
for p in out:
    print(labels[p.argmax()], *(f"{v:.7g}" for v in p), sep=",")
