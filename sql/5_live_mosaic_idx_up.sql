-- Migration 5 up: the live page reads one mosaic's stable tiles per refresh.
-- MySQL/MariaDB also reach them through the mosaic foreign key's index;
-- SQLite has no implicit foreign-key index and would scan every tile.  The
-- frame comes first so that InnoDB never adopts this index for the foreign
-- key (which would make it impossible to drop).
CREATE INDEX IF NOT EXISTS tile_frame_mosaic_idx ON tem_camera_images (frame_number, tem_camera_image_mosaic_id);
