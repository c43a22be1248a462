"""DICOM input: stored values through RescaleSlope/Intercept to [0, 1] as computed by hand, MONOCHROME1
inverted, folders and shards of .dcm files, and one clear error for compressed syntaxes that cannot decode."""

import numpy as np
import pytest
import torch

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, generate_uid  # noqa: E402

from sslkit.data.dicom import read_dicom  # noqa: E402
from sslkit.data.errors import DataError  # noqa: E402
from sslkit.data.folder import ImageFolderDataset, load_image  # noqa: E402
from sslkit.data.shard_pack import pack_shards  # noqa: E402
from sslkit.data.shards import ShardDataset, shard_files  # noqa: E402

STORED = (np.arange(30, dtype=np.uint16).reshape(5, 6) * 2000 + 123)  # up to 58123: needs 16 bits


def _write_dicom(path, stored=STORED, slope=2.5, intercept=-1024.0, photometric="MONOCHROME2",
                 syntax=ExplicitVRLittleEndian, pixel_bytes=None):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if pixel_bytes is None:
        ds.PixelData = stored.astype("<u2").tobytes()
    else:  # compressed: one encapsulated fragment
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([pixel_bytes])
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _by_hand(stored, slope, intercept, window=None):
    values = stored.astype(np.float64) * slope + intercept
    low, high = window if window is not None else sorted((0 * slope + intercept, 65535 * slope + intercept))
    return np.clip((values - low) / (high - low), 0, 1)


def test_pixels_are_the_rescaled_values_scaled_as_16_bit(tmp_path):
    path = _write_dicom(tmp_path / "a.dcm")
    image = load_image(path, channels=1)
    assert image.shape == (1, 5, 6) and image.dtype == torch.float32
    expected = _by_hand(STORED, 2.5, -1024.0)
    np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-6)
    # Without a window the stored bits' range is the scale: a 16-bit value reads as stored/65535, as a 16-bit PNG.
    np.testing.assert_allclose(image[0].numpy(), STORED / 65535.0, atol=1e-6)
    # A fixed window in modality units (e.g. Hounsfield): slope and intercept now decide the numbers.
    window = (-1000.0, 100000.0)
    windowed = read_dicom(path, "a.dcm", window=window)
    np.testing.assert_allclose(windowed, _by_hand(STORED, 2.5, -1024.0, window), atol=1e-6)
    assert not np.allclose(windowed, _by_hand(STORED, 1.0, 0.0, window), atol=1e-3)
    assert torch.equal(load_image(path, channels=3), image.repeat(3, 1, 1))


def test_the_recipe_window_reaches_every_dicom_file_through_open_configured(tmp_path):
    from sslkit.config import ConfigError, load_config
    from sslkit.data.sources import open_configured

    (tmp_path / "scans").mkdir()
    _write_dicom(tmp_path / "scans" / "a.dcm", slope=1.0, intercept=-1024.0)
    _write_dicom(tmp_path / "scans" / "b.dcm", slope=0.5, intercept=0.0)
    cfg = load_config(None, [f"data.source={tmp_path / 'scans'}", "data.dicom_window=[-1024, 20000]"])
    train = open_configured(cfg.data).train
    for i, (slope, intercept) in enumerate(((1.0, -1024.0), (0.5, 0.0))):
        expected = _by_hand(STORED, slope, intercept, (-1024.0, 20000.0))
        np.testing.assert_allclose(train[i]["image"][0].numpy(), expected, atol=1e-6)
    with pytest.raises(ConfigError, match="data.dicom_window"):
        load_config(None, ["data.dicom_window=[2000, -1000]"])


def test_monochrome1_is_inverted(tmp_path):
    plain = load_image(_write_dicom(tmp_path / "m2.dcm"), channels=1)
    inverted = load_image(_write_dicom(tmp_path / "m1.dcm", photometric="MONOCHROME1"), channels=1)
    torch.testing.assert_close(inverted, 1.0 - plain)


def test_dicom_folders_and_shards_read_as_one_channel(tmp_path):
    (tmp_path / "src").mkdir()
    for i in range(3):
        _write_dicom(tmp_path / "src" / f"{i}.dcm", stored=STORED + i)
    folder = ImageFolderDataset(tmp_path / "src")
    assert len(folder) == 3 and folder.channels == 1
    result = pack_shards(folder, tmp_path / "shards", 2, source="src", progress=False)
    shards = ShardDataset(shard_files(result.pattern))
    assert shards.channels == 1 and shards.name(0).endswith(".dcm")
    for i in range(3):
        assert torch.equal(shards[i]["image"], folder[i]["image"])


def test_a_syntax_without_a_decoder_names_file_syntax_and_fix(tmp_path):
    path = _write_dicom(tmp_path / "ls.dcm", syntax=JPEGLSLossless, pixel_bytes=b"\xff\xd8not really jpeg-ls")
    with pytest.raises(DataError) as error:
        load_image(path, channels=1)
    message = str(error.value)
    assert "ls.dcm" in message and "JPEG-LS Lossless" in message and "pip install" in message
    assert "convert" in message and error.value.path == str(path)


def test_undecodable_compressed_pixels_name_file_and_syntax(tmp_path):
    path = _write_dicom(tmp_path / "j2k.dcm", syntax=JPEG2000Lossless, pixel_bytes=b"\x00\x01 not a codestream")
    with pytest.raises(DataError) as error:
        load_image(path, channels=1)
    assert "j2k.dcm" in str(error.value) and "JPEG 2000" in str(error.value)
    assert len(str(error.value).splitlines()) == 1
    # In a folder it is one bad file: skipped and listed, or one error naming it.
    _write_dicom(tmp_path / "ok.dcm")
    log = tmp_path / "bad.txt"
    folder = ImageFolderDataset(tmp_path, skip_bad_files=True, bad_files_log=log, channels=1)
    assert folder[0]["path"].endswith("ok.dcm") and "j2k.dcm" in log.read_text()
