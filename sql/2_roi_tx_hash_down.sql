-- Migration 2 down (CONTRACT.md 6.4): reverses 2_roi_tx_hash_up.sql.
DROP INDEX roi_images_tx_hash_idx ON roi_images;
ALTER TABLE roi_images DROP COLUMN tx_hash;
