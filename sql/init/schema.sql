-- imagecatcher database schema (CONTRACT.md section 6).
-- Tables the daemon uses (6.1) plus the reference tables reached by their
-- foreign keys (6.2a). Parents are created before children.
-- Already includes the changes of migrations 1 and 2 (see gomigrate seed rows).

-- ---------------------------------------------------------------------------
-- Reference tables (6.2a)
-- ---------------------------------------------------------------------------

CREATE TABLE people (
    person_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username VARCHAR(16) NOT NULL,
    first_name VARCHAR(16),
    last_name VARCHAR(16),
    email VARCHAR(64),
    notes TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE UNIQUE INDEX ix_people_username ON people (username);

CREATE TABLE tem_manufacturers (
    tem_manufacturer_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255),
    notes TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE tems (
    tem_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tem_manufacturer_id INTEGER NOT NULL,
    visible_id VARCHAR(16),
    name VARCHAR(255),
    notes TEXT,
    CONSTRAINT fk_tems_tem_manufacturer_id FOREIGN KEY (tem_manufacturer_id) REFERENCES tem_manufacturers (tem_manufacturer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE temca_types (
    temca_type_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255),
    number_of_cameras INTEGER,
    notes TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE tem_scintillator_manufacturers (
    tem_scintillator_manufacturer_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255),
    notes TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE tem_scintillator_types (
    tem_scintillator_type_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tem_scintillator_manufacturer_id INTEGER,
    name VARCHAR(255),
    notes TEXT,
    CONSTRAINT fk_tem_scintillator_types_tem_scintillator_manufacturer_id FOREIGN KEY (tem_scintillator_manufacturer_id) REFERENCES tem_scintillator_manufacturers (tem_scintillator_manufacturer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE tem_scintillators (
    tem_scintillator_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tem_scintillator_type_id INTEGER,
    visible_id VARCHAR(255),
    notes TEXT,
    CONSTRAINT fk_tem_scintillators_tem_scintillator_type_id FOREIGN KEY (tem_scintillator_type_id) REFERENCES tem_scintillator_types (tem_scintillator_type_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE tem_camera_manufacturers (
    tem_camera_manufacturer_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255),
    notes TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE tem_camera_types (
    tem_camera_type_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tem_camera_manufacturer_id INTEGER,
    name VARCHAR(255),
    notes TEXT,
    CONSTRAINT fk_tem_camera_types_tem_camera_manufacturer_id FOREIGN KEY (tem_camera_manufacturer_id) REFERENCES tem_camera_manufacturers (tem_camera_manufacturer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE tem_cameras (
    tem_camera_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tem_camera_type_id INTEGER,
    visible_id VARCHAR(16),
    notes TEXT,
    CONSTRAINT fk_tem_cameras_tem_camera_type_id FOREIGN KEY (tem_camera_type_id) REFERENCES tem_camera_types (tem_camera_type_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE data_source_types (
    data_source_type_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(50),
    notes TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE path_prefixes (
    path_prefix_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(50) NOT NULL,
    path VARCHAR(255),
    data_source_type_id INTEGER,
    CONSTRAINT fk_path_prefixes_data_source_type_id FOREIGN KEY (data_source_type_id) REFERENCES data_source_types (data_source_type_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- ---------------------------------------------------------------------------
-- TEM / temca resolution (6.1)
-- ---------------------------------------------------------------------------

CREATE TABLE temcas (
    temca_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tem_id INTEGER,
    tem_scintillator_id INTEGER,
    temca_type_id INTEGER,
    start_date DATETIME,
    end_date DATETIME,
    notes VARCHAR(255),
    CONSTRAINT fk_temcas_tem_id FOREIGN KEY (tem_id) REFERENCES tems (tem_id),
    CONSTRAINT fk_temcas_tem_scintillator_id FOREIGN KEY (tem_scintillator_id) REFERENCES tem_scintillators (tem_scintillator_id),
    CONSTRAINT fk_temcas_temca_type_id FOREIGN KEY (temca_type_id) REFERENCES temca_types (temca_type_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE tem_pc_ip_addresses (
    tem_pc_ip_address_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tem_id INTEGER NOT NULL,
    ip_address BINARY(4) NOT NULL,
    start_date DATETIME,
    end_date DATETIME,
    CONSTRAINT fk_tem_pc_ip_addresses_tem_id FOREIGN KEY (tem_id) REFERENCES tems (tem_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE tem_camera_configurations (
    tem_camera_configuration_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    temca_id INTEGER NOT NULL,
    tem_camera_id INTEGER,
    tem_camera_number SMALLINT,
    tem_camera_array_col SMALLINT,
    tem_camera_array_row SMALLINT,
    tem_camera_width INTEGER,
    tem_camera_height INTEGER,
    tem_camera_mask_url VARCHAR(255),
    tem_camera_transformation_ref VARCHAR(255),
    notes VARCHAR(255),
    CONSTRAINT fk_tem_camera_configurations_temca_id FOREIGN KEY (temca_id) REFERENCES temcas (temca_id),
    CONSTRAINT fk_tem_camera_configurations_tem_camera_id FOREIGN KEY (tem_camera_id) REFERENCES tem_cameras (tem_camera_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- ---------------------------------------------------------------------------
-- Acquisitions, mosaics, content (6.1)
-- ---------------------------------------------------------------------------

CREATE TABLE ini_files_denorm (
    ini_file_denorm_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    ini_file TEXT,
    when_acquired DATETIME NOT NULL,
    when_inserted DATETIME NOT NULL,
    when_completed DATETIME NULL,
    uid BIGINT NOT NULL,
    number_of_cameras INTEGER NOT NULL,
    x_sm_step_pix INTEGER,
    y_sm_step_pix INTEGER,
    x_big_step_pix INTEGER,
    y_big_step_pix INTEGER,
    number_of_x_steps INTEGER,
    number_of_y_steps INTEGER,
    center_x_m FLOAT,
    center_y_m FLOAT,
    tem_y_m FLOAT,
    slot_midpoint_x_m FLOAT,
    slot_midpoint_y_m FLOAT,
    slot_angle_deg FLOAT,
    pixels_per_um FLOAT,
    tem_magnification INTEGER,
    url VARCHAR(1024),
    sample_name VARCHAR(255),
    project_name VARCHAR(80),
    project_owner VARCHAR(80),
    stack_name VARCHAR(80),
    mosaic_type VARCHAR(32),
    microscopist_name VARCHAR(50),
    roi_tiles_file VARCHAR(1024),
    notes TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE UNIQUE INDEX ix_ini_files_denorm_uid ON ini_files_denorm (uid);

CREATE INDEX ix_ini_files_denorm_sample_name ON ini_files_denorm (sample_name);

CREATE INDEX ix_ini_files_denorm_when_acquired ON ini_files_denorm (when_acquired);

CREATE TABLE tem_camera_image_mosaics (
    tem_camera_image_mosaic_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    ini_file_denorm_id INTEGER NOT NULL,
    temca_id INTEGER NULL,
    person_id INTEGER,
    target_num_cols INTEGER NOT NULL,
    target_num_rows INTEGER NOT NULL,
    CONSTRAINT fk_tem_camera_image_mosaics_ini_file_denorm_id FOREIGN KEY (ini_file_denorm_id) REFERENCES ini_files_denorm (ini_file_denorm_id),
    CONSTRAINT fk_tem_camera_image_mosaics_temca_id FOREIGN KEY (temca_id) REFERENCES temcas (temca_id),
    CONSTRAINT fk_tem_camera_image_mosaics_person_id FOREIGN KEY (person_id) REFERENCES people (person_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE file_objects (
    file_object_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sha1_checksum BINARY(20) NULL,
    checksum_date DATETIME,
    creation_date DATETIME
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE file_object_fs_replicas (
    file_object_fs_replica_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    path_prefix_id INTEGER,
    path VARCHAR(255),
    relative_path BOOL,
    jfs_path VARCHAR(1024),
    jfs_key VARCHAR(64),
    location_url VARCHAR(1024),
    file_object_id BIGINT NOT NULL,
    derived_from_file_object_fs_replica_id BIGINT,
    file_exists_yn BOOL NOT NULL,
    last_verified DATETIME,
    replica_created_date DATETIME NOT NULL,
    CONSTRAINT fk_file_object_fs_replicas_path_prefix_id FOREIGN KEY (path_prefix_id) REFERENCES path_prefixes (path_prefix_id),
    CONSTRAINT fk_file_object_fs_replicas_file_object_id FOREIGN KEY (file_object_id) REFERENCES file_objects (file_object_id),
    CONSTRAINT fk_file_object_fs_replicas_derived_from FOREIGN KEY (derived_from_file_object_fs_replica_id) REFERENCES file_object_fs_replicas (file_object_fs_replica_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE INDEX ix_file_object_fs_replicas_path ON file_object_fs_replicas (path);

CREATE INDEX ix_file_object_fs_replicas_jfs_key ON file_object_fs_replicas (jfs_key);

CREATE TABLE tem_camera_images (
    tem_camera_image_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tem_camera_image_mosaic_id INTEGER NOT NULL,
    tem_camera_configuration_id INTEGER NULL,
    file_object_id BIGINT,
    frame_number INTEGER,
    mosaic_col INTEGER NOT NULL,
    mosaic_row INTEGER NOT NULL,
    u8HistOffset FLOAT,
    u8HistScale FLOAT,
    acquired_timestamp DATETIME NULL,
    CONSTRAINT fk_tem_camera_images_tem_camera_image_mosaic_id FOREIGN KEY (tem_camera_image_mosaic_id) REFERENCES tem_camera_image_mosaics (tem_camera_image_mosaic_id),
    CONSTRAINT fk_tem_camera_images_tem_camera_configuration_id FOREIGN KEY (tem_camera_configuration_id) REFERENCES tem_camera_configurations (tem_camera_configuration_id),
    CONSTRAINT fk_tem_camera_images_file_object_id FOREIGN KEY (file_object_id) REFERENCES file_objects (file_object_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE INDEX tile_col_row_frame_idx ON tem_camera_images (mosaic_col, mosaic_row, frame_number);

CREATE INDEX tile_acquired_idx ON tem_camera_images (acquired_timestamp);

-- ---------------------------------------------------------------------------
-- Regions of interest and tile states (6.1)
-- ---------------------------------------------------------------------------

CREATE TABLE image_mosaic_rois (
    image_mosaic_roi_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tem_camera_image_mosaic_id INTEGER NOT NULL,
    sample_section_id INTEGER,
    sample_section_name VARCHAR(64),
    CONSTRAINT fk_image_mosaic_rois_tem_camera_image_mosaic_id FOREIGN KEY (tem_camera_image_mosaic_id) REFERENCES tem_camera_image_mosaics (tem_camera_image_mosaic_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE INDEX mosaic_roi_section_idx ON image_mosaic_rois (sample_section_id, sample_section_name);

CREATE TABLE acq_time_rois (
    acq_time_roi_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tem_camera_image_mosaic_id INTEGER NOT NULL,
    image_mosaic_roi_id INTEGER NOT NULL,
    acq_region_name VARCHAR(10),
    nominal_section_number INTEGER,
    CONSTRAINT fk_acq_time_rois_tem_camera_image_mosaic_id FOREIGN KEY (tem_camera_image_mosaic_id) REFERENCES tem_camera_image_mosaics (tem_camera_image_mosaic_id),
    CONSTRAINT fk_acq_time_rois_image_mosaic_roi_id FOREIGN KEY (image_mosaic_roi_id) REFERENCES image_mosaic_rois (image_mosaic_roi_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE INDEX roi_section_idx ON acq_time_rois (nominal_section_number);

CREATE TABLE roi_images (
    roi_image_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    image_mosaic_roi_id INTEGER NOT NULL,
    tem_camera_image_id BIGINT NOT NULL,
    current_state VARCHAR(64) NOT NULL,
    tx_hash VARCHAR(80),
    CONSTRAINT fk_roi_images_image_mosaic_roi_id FOREIGN KEY (image_mosaic_roi_id) REFERENCES image_mosaic_rois (image_mosaic_roi_id),
    CONSTRAINT fk_roi_images_tem_camera_image_id FOREIGN KEY (tem_camera_image_id) REFERENCES tem_camera_images (tem_camera_image_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE INDEX mosaic_roi_to_image_idx ON roi_images (image_mosaic_roi_id, tem_camera_image_id);

CREATE INDEX roi_images_tx_hash_idx ON roi_images (tx_hash);

-- ---------------------------------------------------------------------------
-- Ancillary files, calibrations, migrations bookkeeping (6.1)
-- ---------------------------------------------------------------------------

CREATE TABLE ancillary_file_types (
    ancillary_file_type_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description VARCHAR(255)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE ancillary_files (
    ancillary_file_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tem_camera_image_mosaic_id INTEGER,
    file_object_id BIGINT,
    ancillary_file_type_id INTEGER,
    CONSTRAINT fk_ancillary_files_tem_camera_image_mosaic_id FOREIGN KEY (tem_camera_image_mosaic_id) REFERENCES tem_camera_image_mosaics (tem_camera_image_mosaic_id),
    CONSTRAINT fk_ancillary_files_file_object_id FOREIGN KEY (file_object_id) REFERENCES file_objects (file_object_id),
    CONSTRAINT fk_ancillary_files_ancillary_file_type_id FOREIGN KEY (ancillary_file_type_id) REFERENCES ancillary_file_types (ancillary_file_type_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE calibrations (
    calibration_id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    calibration_name VARCHAR(50) NOT NULL,
    date_generated DATETIME,
    json_config TEXT,
    notes VARCHAR(255)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE gomigrate (
    id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    migration_id BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE UNIQUE INDEX ix_gomigrate_migration_id ON gomigrate (migration_id);
