-- Migration 1 up (CONTRACT.md 6.4): tile acquisition time and replica location URL.
ALTER TABLE roi_images RENAME COLUMN roi_included_images_id TO roi_image_id;
ALTER TABLE tem_camera_images ADD COLUMN acquired_timestamp DATETIME NULL;
CREATE INDEX tile_acquired_idx ON tem_camera_images (acquired_timestamp);
ALTER TABLE file_object_fs_replicas ADD COLUMN location_url VARCHAR(1024);
UPDATE file_object_fs_replicas SET location_url = CONCAT('http://sc1-jrc:81/proxy/bparc/', jfs_key) WHERE jfs_key != '';
