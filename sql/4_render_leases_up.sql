-- Migration 4 up: render work distribution (CONTRACT §9, Q23).
-- Links of a tile, found without scanning roi_images (SQLite has no implicit
-- foreign-key index).
CREATE INDEX IF NOT EXISTS roi_images_tile_idx ON roi_images (tem_camera_image_id);
-- Optional leases (TILE_LEASE_SECONDS): when a claimed link returns to its
-- old state if tile-state does not move it on in time.
ALTER TABLE roi_images ADD COLUMN lease_expires DATETIME NULL;
ALTER TABLE roi_images ADD COLUMN leased_from_state VARCHAR(64) NULL;
CREATE INDEX roi_images_lease_idx ON roi_images (lease_expires);
