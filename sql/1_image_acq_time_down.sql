-- Migration 1 down (CONTRACT.md 6.4): reverses 1_image_acq_time_up.sql.
ALTER TABLE file_object_fs_replicas DROP COLUMN location_url;
DROP INDEX tile_acquired_idx ON tem_camera_images;
ALTER TABLE tem_camera_images DROP COLUMN acquired_timestamp;
ALTER TABLE roi_images RENAME COLUMN roi_image_id TO roi_included_images_id;
