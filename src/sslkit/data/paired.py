"""A noisy dataset paired with its denoised copy, item by item (noisy-dinov2.md step 5).

Items are those of ``noisy`` plus ``clean_image`` from ``clean`` at the same index. The copy written
by ``sslkit denoise apply`` keeps the noisy folder's layout, so sorted file order aligns the two; a
size mismatch at any index is an error naming it.

With ``skip_bad_files`` a pair whose noisy *or* clean image cannot be read is replaced by the next
readable pair (wrapping) and the bad file is logged to ``bad_files_log``: the two sides skip together, so
they stay aligned. Open both sides strictly (their own ``skip_bad_files`` off) for that.
"""

from __future__ import annotations

import os

from torch.utils.data import Dataset

from sslkit.data.errors import DataError
from sslkit.data.folder import first_readable


class PairedDataset(Dataset):
    def __init__(self, noisy: Dataset, clean: Dataset, names: tuple[str, str] = ("noisy", "denoised"), *,
                 skip_bad_files: bool = False, bad_files_log: str | os.PathLike | None = None):
        if len(noisy) != len(clean):
            raise DataError(f"The {names[0]} data has {len(noisy)} images and the {names[1]} copy {len(clean)}; "
                            f"teacher guidance needs the two aligned image by image.")
        self.noisy, self.clean, self.names = noisy, clean, names
        self.skip_bad_files, self.bad_files_log = skip_bad_files, bad_files_log
        self._known_bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.noisy)

    def __getitem__(self, index: int) -> dict:
        if not self.skip_bad_files:
            return self._pair(index)
        n = len(self)
        item = first_readable(index, n, self._known_bad, self._pair, self.bad_files_log)
        if item is not None:
            return item
        raise DataError(f"Every one of the {n} {self.names[0]}/{self.names[1]} pairs has an unreadable image; "
                        f"check both folders.")

    def _pair(self, index: int) -> dict:
        item = dict(self.noisy[index])
        clean = self.clean[index]["image"]
        if clean.shape != item["image"].shape:
            raise DataError(f"Image {index} is {tuple(item['image'].shape)} in the {self.names[0]} data but "
                            f"{tuple(clean.shape)} in the {self.names[1]} copy; the two must be aligned.")
        item["clean_image"] = clean
        return item
