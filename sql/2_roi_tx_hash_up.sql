-- Migration 2 up (CONTRACT.md 6.4): batch id of the last next-tile change per ROI link.
ALTER TABLE roi_images ADD COLUMN tx_hash VARCHAR(80);
CREATE INDEX roi_images_tx_hash_idx ON roi_images (tx_hash);
