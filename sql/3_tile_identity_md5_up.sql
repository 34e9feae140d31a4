-- Migration 3 up: tile identity and true checksums (CONTRACT §14, Q20).
-- A tile is one row per (mosaic, col, row, frame); concurrent captures of the
-- same tile, on one daemon or several, now meet on this unique key (mosaic last,
-- so that InnoDB keeps its own index for the mosaic foreign key).  A database
-- that already holds duplicate tiles must be cleaned up before this migration.
CREATE UNIQUE INDEX tile_identity_idx ON tem_camera_images (mosaic_col, mosaic_row, frame_number, tem_camera_image_mosaic_id);
-- file_objects.sha1_checksum now holds the real SHA-1; the MD5 lives here.
ALTER TABLE file_objects ADD COLUMN md5_checksum BINARY(16);
-- Served from an index, not a scan (Q36): links by state.
CREATE INDEX roi_images_state_idx ON roi_images (current_state, image_mosaic_roi_id);
