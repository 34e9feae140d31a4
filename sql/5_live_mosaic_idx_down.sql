-- Migration 5 down: drop what 5 up added.
DROP INDEX tile_frame_mosaic_idx ON tem_camera_images;
