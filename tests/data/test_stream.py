import torch
from torch.utils.data import Dataset

from sslkit.data.stream import AugmentedStream, StreamSampler


class Toy(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"image": torch.full((1, 2, 2), float(i)), "label": i % 3}


def noisy(image):
    return image + torch.rand(image.shape)


def test_every_epoch_is_a_permutation_and_epochs_differ():
    stream = AugmentedStream(Toy(), noisy, seed=3)
    e0 = [stream.dataset_index(p) for p in range(10)]
    e1 = [stream.dataset_index(p) for p in range(10, 20)]
    assert sorted(e0) == list(range(10)) and sorted(e1) == list(range(10))
    assert e0 != e1


def test_items_depend_only_on_seed_and_position_and_leave_global_rng_alone():
    a = AugmentedStream(Toy(), noisy, seed=1)
    b = AugmentedStream(Toy(), noisy, seed=1)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    x = a[17]
    assert torch.equal(torch.get_rng_state(), before)
    [b[p] for p in (3, 40, 2)]  # other accesses first: order must not matter
    y = b[17]
    assert torch.equal(x["image"], y["image"]) and x["label"] == y["label"] and x["position"] == 17
    assert not torch.equal(a[18]["image"] - a[18]["image"].floor(), x["image"] - x["image"].floor())
    c = AugmentedStream(Toy(), noisy, seed=2)
    assert not torch.equal(c[17]["image"], x["image"])


def test_two_ranks_see_exactly_the_samples_of_one():
    one = list(StreamSampler(batch_size=8, total_steps=5))
    r0 = list(StreamSampler(batch_size=4, total_steps=5, rank=0, world_size=2))
    r1 = list(StreamSampler(batch_size=4, total_steps=5, rank=1, world_size=2))
    for step in range(5):
        assert sorted(r0[4 * step:4 * step + 4] + r1[4 * step:4 * step + 4]) == one[8 * step:8 * step + 8]


def test_resumed_sampler_continues_the_stream():
    full = list(StreamSampler(batch_size=4, total_steps=6))
    resumed = list(StreamSampler(batch_size=4, total_steps=6, start_step=4))
    assert resumed == full[16:]
    counter = {"step": 2}
    live = StreamSampler(batch_size=4, total_steps=6, start_step=lambda: counter["step"])
    assert list(live) == full[8:]
    counter["step"] = 5
    assert list(live) == full[20:] and len(live) == 24
