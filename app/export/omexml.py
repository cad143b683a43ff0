"""The OME-XML an OME-TIFF export carries in its first ImageDescription (OME 2016-06 schema).

One Image for the slide (physical pixel size, the stage position of its corner, the objective
through an Instrument it references) and, where the scan had one, a second Image "macro" for
the overview, each pointing at its TIFF IFD. Serialised as UTF-8 with "µm" written out, as the
OME-TIFF specification and Bio-Formats' own writer do: Bio-Formats (QuPath, Fiji) cleans the
XML of '&' before parsing it, so a character reference such as "&#181;m" reaches it as
" #181;m", the OME-XML is refused, and the file is read as a plain TIFF without its pyramid or
pixel size.
"""

from __future__ import annotations

import datetime as _dt
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from slidescan.app.export.objective import magnification, numerical_aperture
from slidescan.app.stitch.source import SlideInfo

NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_PIXEL_TYPES = {
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "float32": "float",
    "float64": "double",
}
UM = "\u00b5m"


@dataclass(frozen=True)
class OmeImage:
    """One Image of the file: its pixels' size and type, and the IFD its plane is in."""

    name: str
    height: int
    width: int
    channels: int
    dtype: np.dtype
    ifd: int
    pixel_size_um: float
    position_um: tuple[float, float] | None = None


def pixel_type(dtype: np.dtype) -> str:
    name = np.dtype(dtype).name
    if name not in _PIXEL_TYPES:
        raise ValueError(f"OME-TIFF has no pixel type for {name}")
    return _PIXEL_TYPES[name]


def ome_xml(
    images: list[OmeImage],
    info: SlideInfo,
    creator: str,
    acquired: _dt.datetime | None = None,
) -> str:
    """The OME document for `images` (the first one is the slide and gets the objective)."""
    ET.register_namespace("", NS)
    ET.register_namespace("xsi", _XSI)
    root = ET.Element(
        _q("OME"),
        {
            "Creator": creator,
            "UUID": f"urn:uuid:{uuid.uuid4()}",
            f"{{{_XSI}}}schemaLocation": f"{NS} {NS}/ome.xsd",
        },
    )
    mag, na = magnification(info), numerical_aperture(info)
    has_objective = mag is not None or na is not None
    if has_objective:
        instrument = ET.SubElement(root, _q("Instrument"), {"ID": "Instrument:0"})
        objective = {"ID": "Objective:0"}
        if info.objective:
            objective["Model"] = info.objective
        if mag is not None:
            objective["NominalMagnification"] = _num(mag)
        if na is not None:
            objective["LensNA"] = _num(na)
        ET.SubElement(instrument, _q("Objective"), objective)
    for n, im in enumerate(images):
        image = ET.SubElement(root, _q("Image"), {"ID": f"Image:{n}", "Name": im.name})
        if acquired is not None:
            ET.SubElement(image, _q("AcquisitionDate")).text = acquired.isoformat(
                timespec="seconds"
            )
        if n == 0 and has_objective:
            ET.SubElement(image, _q("InstrumentRef"), {"ID": "Instrument:0"})
            ET.SubElement(image, _q("ObjectiveSettings"), {"ID": "Objective:0"})
        pixels = ET.SubElement(
            image,
            _q("Pixels"),
            {
                "ID": f"Pixels:{n}",
                "DimensionOrder": "XYCZT",
                "Type": pixel_type(im.dtype),
                "SizeX": str(im.width),
                "SizeY": str(im.height),
                "SizeC": str(im.channels),
                "SizeZ": "1",
                "SizeT": "1",
                "Interleaved": "true" if im.channels > 1 else "false",
                "PhysicalSizeX": _num(im.pixel_size_um),
                "PhysicalSizeXUnit": UM,
                "PhysicalSizeY": _num(im.pixel_size_um),
                "PhysicalSizeYUnit": UM,
            },
        )
        ET.SubElement(
            pixels,
            _q("Channel"),
            {"ID": f"Channel:{n}:0", "SamplesPerPixel": str(im.channels)},
        )
        ET.SubElement(pixels, _q("TiffData"), {"IFD": str(im.ifd), "PlaneCount": "1"})
        if im.position_um is not None:
            ET.SubElement(
                pixels,
                _q("Plane"),
                {
                    "TheZ": "0",
                    "TheT": "0",
                    "TheC": "0",
                    "PositionX": _num(im.position_um[0]),
                    "PositionXUnit": UM,
                    "PositionY": _num(im.position_um[1]),
                    "PositionYUnit": UM,
                },
            )
    body = ET.tostring(root, encoding="unicode", xml_declaration=False)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _num(value: float) -> str:
    return repr(float(value))
