-- Migration 3 down: drop what 3 up added.
DROP INDEX roi_images_state_idx ON roi_images;
ALTER TABLE file_objects DROP COLUMN md5_checksum;
DROP INDEX tile_identity_idx ON tem_camera_images;
