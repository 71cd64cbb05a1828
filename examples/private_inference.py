"""Private inference: party 0 owns a trained CNN, party 1 owns images; nobody shows theirs.

    python examples/private_inference.py            # both parties as threads of this process
    veil run -n 2 examples/private_inference.py     # one process per party

Party 0 trains a small CNN on scikit-learn's digits (plaintext, at party 0 only). Party 1
holds the 450 test images. The model's architecture becomes public, its weights are
secret-shared, the images are secret-shared, and only the predicted classes are revealed,
to party 1 alone.
"""

import time

import torch

import veil
from veil.compile import zoo

MODEL_OWNER, DATA_OWNER = 0, 1


def main():
    rank = veil.rank()
    model = images = labels = None
    if rank == MODEL_OWNER:
        model = zoo.train_digits_cnn()                    # plaintext, never leaves party 0
    if rank == DATA_OWNER:
        _, _, images, labels = zoo.digits_data()         # the images never leave party 1

    # Party 0 learns the images' shape (public by contract), nothing else.
    x = veil.tensor(images, owner=DATA_OWNER)
    example = torch.zeros(x.shape) if rank == MODEL_OWNER else None
    net = veil.secure(model, owner=MODEL_OWNER, example_input=example)

    before, start = veil.stats(), time.perf_counter()
    scores = net(x)
    # Discloses the predicted class of each image to party 1 only (not the scores).
    predicted = scores.argmax(dim=1).reveal(to=DATA_OWNER)
    seconds = time.perf_counter() - start
    sent = veil.stats()["bytes_sent"] - before["bytes_sent"]

    if rank != DATA_OWNER:
        print(f"model owner: served {tuple(x.shape)[0]} predictions without seeing the "
              f"images or the results; sent {sent / 1e6:.1f} MB in {seconds:.2f} s")
        return None
    accuracy = (predicted == labels).float().mean().item()
    # Demo check only: a real data owner has no model. Party 1 re-runs party 0's public
    # training recipe (same seed) to compare the secure predictions with plaintext ones.
    reference = zoo.train_digits_cnn()
    with torch.no_grad():
        plain = reference(images).argmax(dim=1)
    agree = (predicted == plain).float().mean().item()
    print(f"data owner: first predictions: {predicted[:16].tolist()}")
    print(f"data owner: accuracy {accuracy:.1%} on {len(labels)} images; agreement with "
          f"plaintext inference {agree:.1%}; {seconds:.2f} s, {sent / 1e6:.1f} MB sent")
    return {"accuracy": accuracy, "agreement": agree, "seconds": seconds, "bytes_sent": sent}


if __name__ == "__main__":
    veil.run(main, parties=2)
