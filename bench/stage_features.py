#!/usr/bin/env python3
"""Which features a linear top gains from on photos: stage 5's global average (what fruitlab
stores) against stages 4 and 5, stages 3 to 5, stage 5's average and maximum, and the mirrored
image's features (as extra training rows, as test-time augmentation, or averaged with the
image's own). Each is a logistic regression on standardised features (scikit-learn, L-BFGS),
its strength C chosen by 5-fold cross-validation on Training/; the table gives each C's
cross-validated and Test/ accuracy.

    cargo run --release --example stage_features -- DATA/Training OUT/Training
    cargo run --release --example stage_features -- DATA/Test OUT/Test
    python3 -m venv .venv-sk && .venv-sk/bin/pip install numpy scikit-learn
    .venv-sk/bin/python bench/stage_features.py OUT
"""
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# The blocks of a row, as examples/stage_features.rs writes them.
STAGE3, STAGE4, STAGE5, STAGE5_MAX, STAGE5_MIRRORED = range(5)
WIDTHS = [512, 1024, 2048, 2048, 2048]
OFFSETS = np.cumsum([0] + WIDTHS)
STRENGTHS = [0.01, 0.03, 0.1, 0.3]


def load(prefix):
    """The rows and labels, ordered by path (the cross-validation folds depend on the order)."""
    rows = np.fromfile(prefix + ".f32", dtype="<f4").reshape(-1, OFFSETS[-1])
    lines = [line.rstrip("\n").split("\t") for line in open(prefix + ".labels")]
    order = sorted(range(len(lines)), key=lambda i: lines[i][1])
    return rows[order], np.array([int(lines[i][0]) for i in order])


def blocks(rows, *which):
    return np.hstack([rows[:, OFFSETS[b] : OFFSETS[b + 1]] for b in which])


def fit(features, labels, strength):
    model = make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=3000))
    return model.fit(features, labels)


def measure(name, train_rows, predict, train, test):
    """train_rows(rows, labels) -> the top's training features and labels;
    predict(model, rows) -> predicted labels."""
    (x, y), (x_test, y_test) = train, test
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, y))
    results = []
    for strength in STRENGTHS:
        fold_accuracies = [
            np.mean(predict(fit(*train_rows(x[t], y[t]), strength), x[v]) == y[v])
            for t, v in folds
        ]
        model = fit(*train_rows(x, y), strength)
        results.append((strength, np.mean(fold_accuracies), np.mean(predict(model, x_test) == y_test)))
    chosen = max(results, key=lambda r: r[1])
    cells = " | ".join(f"{100 * cv:.2f} / {100 * acc:.2f}" for _, cv, acc in results)
    print(f"| {name} | {cells} | C={chosen[0]}: **{100 * chosen[2]:.2f}** |", flush=True)


def main():
    out = sys.argv[1]
    train, test = load(out + "/Training"), load(out + "/Test")
    print("| features | " + " | ".join(f"C={c}: cv / Test" for c in STRENGTHS) + " | chosen by cv |")
    print("| --- " * (len(STRENGTHS) + 2) + "|")
    for name, which in [
        ("stage 5 average (fruitlab's)", [STAGE5]),
        ("stage 4 average", [STAGE4]),
        ("stages 4 and 5", [STAGE4, STAGE5]),
        ("stages 3, 4 and 5", [STAGE3, STAGE4, STAGE5]),
        ("stage 5 average and maximum", [STAGE5, STAGE5_MAX]),
    ]:
        measure(name, lambda r, y: (blocks(r, *which), y), lambda m, r: m.predict(blocks(r, *which)), train, test)
    mirrored_rows = lambda r, y: (np.vstack([blocks(r, STAGE5), blocks(r, STAGE5_MIRRORED)]), np.concatenate([y, y]))
    own_rows = lambda r, y: (blocks(r, STAGE5), y)
    plain = lambda m, r: m.predict(blocks(r, STAGE5))
    both = lambda m, r: (m.predict_proba(blocks(r, STAGE5)) + m.predict_proba(blocks(r, STAGE5_MIRRORED))).argmax(1)
    measure("stage 5, mirrored images as extra training rows", mirrored_rows, plain, train, test)
    measure("the same, and the mirrored test image's probabilities added", mirrored_rows, both, train, test)
    measure("stage 5, the mirrored test image's probabilities added", own_rows, both, train, test)
    average = lambda r: (blocks(r, STAGE5) + blocks(r, STAGE5_MIRRORED)) / 2
    measure("stage 5, the average of the image's and its mirror's", lambda r, y: (average(r), y), lambda m, r: m.predict(average(r)), train, test)


if __name__ == "__main__":
    main()
