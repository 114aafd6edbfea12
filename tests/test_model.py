import torch

from slmlib.config import LEVELS
from slmlib.model import TinyGPT


def make_model(**kw):
    torch.manual_seed(0)
    args = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0) | kw
    return TinyGPT(**args).eval()


def test_shapes_and_loss():
    model = make_model()
    x = torch.randint(0, 50, (3, 10))
    logits, loss = model(x, x)
    assert logits.shape == (3, 10, 50)
    assert abs(loss.item() - torch.log(torch.tensor(50.0)).item()) < 0.5  # near uniform at init


def test_future_tokens_do_not_change_past_logits():
    model = make_model()
    x = torch.randint(0, 50, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 7) % 50
    a, _ = model(x)
    b, _ = model(y)
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
    assert not torch.allclose(a[0, 8:], b[0, 8:])


def test_weights_are_tied_and_counted_once():
    model = make_model()
    assert model.head.weight is model.tok_emb.weight
    assert model.num_params() == sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=True) < model.num_params()


def test_generate_is_reproducible_and_crops_context():
    model = make_model()
    start = torch.zeros((1, 1), dtype=torch.long)
    a = model.generate(start, 40, seed=3)  # longer than block_size: must crop, not crash
    b = model.generate(start, 40, seed=3)
    c = model.generate(start, 40, seed=4)
    assert a.shape == (1, 41) and torch.equal(a, b) and not torch.equal(a, c)
    greedy = model.generate(start, 5, temperature=0)
    assert torch.equal(greedy, model.generate(start, 5, temperature=0))


def test_generate_stops_at_stop_token_and_top_k():
    model = make_model()
    with torch.no_grad():
        model.ln_f.weight.zero_()
        model.ln_f.bias.fill_(1.0)  # final features all ones: logit_i = sum of row i
        model.head.weight[7] += 1.0  # so token 7 is the most likely
    out = model.generate(torch.zeros((1, 1), dtype=torch.long), 30, top_k=1, stop_token=7)
    assert out[0, -1].item() == 7 and out.size(1) < 31


def test_level_architectures_are_the_seeds():
    table = {n: (c.stories, c.n_layer, c.n_head, c.n_embd) for n, c in LEVELS.items()}
    assert table == {"ultra_tiny": (100, 2, 2, 32), "tiny": (200, 2, 2, 64), "small": (1000, 3, 3, 96),
                     "medium": (3000, 3, 3, 96), "large": (10000, 4, 4, 128)}
