-- Migration 4 down: drop what 4 up added.
DROP INDEX roi_images_lease_idx ON roi_images;
ALTER TABLE roi_images DROP COLUMN leased_from_state;
ALTER TABLE roi_images DROP COLUMN lease_expires;
-- roi_images_tile_idx stays: InnoDB adopts it for the tile foreign key and
-- refuses to drop it; 4 up creates it only if it is missing.
