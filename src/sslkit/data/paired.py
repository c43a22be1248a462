"""A noisy dataset paired with its denoised copy, item by item (noisy-dinov2.md step 5).

Items are those of ``noisy`` plus ``clean_image`` from ``clean`` at the same index. The copy written
by ``sslkit denoise apply`` keeps the noisy folder's layout, so sorted file order aligns the two; a
size mismatch at any index is an error naming it.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from sslkit.data.errors import DataError


class PairedDataset(Dataset):
    def __init__(self, noisy: Dataset, clean: Dataset, names: tuple[str, str] = ("noisy", "denoised")):
        if len(noisy) != len(clean):
            raise DataError(f"The {names[0]} data has {len(noisy)} images and the {names[1]} copy {len(clean)}; "
                            f"teacher guidance needs the two aligned image by image.")
        self.noisy, self.clean, self.names = noisy, clean, names

    def __len__(self) -> int:
        return len(self.noisy)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.noisy[index])
        clean = self.clean[index]["image"]
        if clean.shape != item["image"].shape:
            raise DataError(f"Image {index} is {tuple(item['image'].shape)} in the {self.names[0]} data but "
                            f"{tuple(clean.shape)} in the {self.names[1]} copy; the two must be aligned.")
        item["clean_image"] = clean
        return item
