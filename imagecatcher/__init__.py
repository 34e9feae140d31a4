"""imagecatcher: catches TEMCA tiles over HTTP and raw TCP into an object store."""
