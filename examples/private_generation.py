"""Private text generation: party 0 owns a GPT-2, party 1 owns the prompt; nobody shows theirs.

    python examples/private_generation.py                 # both parties as threads
    veil run -n 2 examples/private_generation.py          # one process per party
    python examples/private_generation.py --small         # GPT-2 small sizes (slow: minutes)

Party 0 holds a GPT-2 language model (random weights built from a config here, as no
checkpoint is downloaded; a real owner would load its own). Party 1 holds a prompt of
token ids. `veil.compile.secure_decoder` captures the model twice (prompt, then one token
at a time against a key/value cache), secret-shares its weights once, and generates
greedily: each step computes only the new token, the cache stays secret-shared, and
each generated token is revealed to party 1 alone.
"""

import os
import sys
import time

import torch

import veil
from veil.compile import zoo
from veil.compile.decoder import greedy_reference, secure_decoder

MODEL_OWNER, PROMPT_OWNER = 0, 1
SMALL = "--small" in sys.argv
PROMPT_LEN, NEW_TOKENS = (32, 8) if SMALL else (8, 6)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_model():
    torch.manual_seed(0 if SMALL else 4)       # 4: a seed whose continuation varies
    if SMALL:                           # GPT-2 small: 12 layers, d 768, vocab 50257
        return zoo.hf_gpt2(vocab=50257, d=768, heads=12, layers=12, seq=1024)
    lm = zoo.hf_gpt2(vocab=500, d=64, heads=4, layers=2, seq=64)
    with torch.no_grad():       # at GPT-2's init scale a random model repeats one token:
        for name, p in lm.named_parameters():         # widen the weights so it varies
            if p.dim() == 2:
                p.normal_(0, 0.5 if ("wte" in name or "wpe" in name) else 0.15)
    return lm


def prompt_ids(vocab):
    return torch.randint(0, vocab, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(1))


def main():
    rank = veil.rank()
    model = build_model() if rank == MODEL_OWNER else None          # never leaves party 0
    vocab = 50257 if SMALL else 500
    prompt = prompt_ids(vocab) if rank == PROMPT_OWNER else None    # never leaves party 1

    # Every party learns the architecture, the prompt length and the number of tokens.
    decoder = secure_decoder(model, owner=MODEL_OWNER, prompt_len=PROMPT_LEN,
                             max_new_tokens=NEW_TOKENS)
    before, start = veil.stats(), time.perf_counter()
    out = decoder.generate(prompt, owner=PROMPT_OWNER)      # tokens: to party 1 only
    seconds = time.perf_counter() - start
    sent = veil.stats()["bytes_sent"] - before["bytes_sent"]
    if rank != PROMPT_OWNER:
        print(f"model owner: generated {NEW_TOKENS} tokens without seeing the prompt or "
              f"them; sent {sent / 1e6:.1f} MB in {seconds:.1f} s")
        return None
    # Demo check only: party 1 rebuilds the public recipe (same seed) to compare with
    # torch's greedy generation; a real prompt owner has no copy of the model.
    want = greedy_reference(build_model(), prompt, NEW_TOKENS)
    per_token = sum(out.step_s) / max(1, len(out.step_s))
    print(f"prompt owner: generated {out.tokens[0].tolist()}; torch greedy "
          f"{want[0].tolist()}: {'equal' if torch.equal(out.tokens, want) else 'DIFFERENT'}")
    print(f"prompt owner: prompt {out.prefill_s:.2f} s, then {per_token:.2f} s per token; "
          f"{sent / 1e6:.1f} MB sent in all")
    return {"tokens": out.tokens, "equal": torch.equal(out.tokens, want)}


if __name__ == "__main__":
    veil.run(main, parties=2)
