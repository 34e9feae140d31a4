"""twistd plugin: ``twistd imagecatcher`` (kept tiny: twistd imports every plugin)."""

from twisted.application.service import ServiceMaker

imagecatcher = ServiceMaker(
    "imagecatcher",
    "imagecatcher.tap",
    "Capture TEMCA tiles over HTTP and raw TCP into an object store.",
    "imagecatcher",
)
