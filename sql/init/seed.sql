-- imagecatcher seed data (CONTRACT.md section 6.3).
-- Explicit ids everywhere. Dates are stored as given (00:00:00), NULL = open-ended.

INSERT INTO people (person_id, username, first_name, last_name, email, notes) VALUES
    (1, 'abaker', 'Alice', 'Baker', 'abaker@example.org', 'lab member'),
    (2, 'bchen', 'Bo', 'Chen', 'bchen@example.org', 'lab member'),
    (3, 'cdiaz', 'Carmen', 'Diaz', 'cdiaz@example.org', 'lab member'),
    (4, 'devans', 'Daniel', 'Evans', 'devans@example.org', 'lab member'),
    (5, 'efischer', 'Emma', 'Fischer', 'efischer@example.org', 'lab member'),
    (6, 'fgarcia', 'Felipe', 'Garcia', 'fgarcia@example.org', 'lab member'),
    (7, 'ghall', 'Grace', 'Hall', 'ghall@example.org', 'lab member'),
    (8, 'hito', 'Hiro', 'Ito', 'hito@example.org', 'contractor'),
    (9, 'ijensen', 'Ida', 'Jensen', 'ijensen@example.org', 'contractor'),
    (10, 'jkumar', 'Jay', 'Kumar', 'jkumar@example.org', 'contractor');

INSERT INTO tem_manufacturers (tem_manufacturer_id, name, notes) VALUES
    (1, 'FEI', NULL);

INSERT INTO tem_scintillator_manufacturers (tem_scintillator_manufacturer_id, name, notes) VALUES
    (1, 'Applied Scintillation Technologies', NULL),
    (2, 'Grant Scientific', NULL);

INSERT INTO temca_types (temca_type_id, name, number_of_cameras, notes) VALUES
    (1, 'single_camera', 1, NULL),
    (2, 'two_by_two_non_overlappinyg', 4, NULL);

INSERT INTO tem_camera_manufacturers (tem_camera_manufacturer_id, name, notes) VALUES
    (1, 'Fairchild Imaging', NULL),
    (2, 'Andor', NULL);

INSERT INTO tems (tem_id, tem_manufacturer_id, visible_id, name, notes) VALUES
    (1, 1, 'D1191', 'D1191', 'Array #1'),
    (2, 1, 'D1127', 'D1127', 'Array #2'),
    (3, 1, 'D1192', 'D1192', 'Autoloader testbed');

INSERT INTO tem_scintillator_types (tem_scintillator_type_id, tem_scintillator_manufacturer_id, name, notes) VALUES
    (1, 1, 'P43 phosphor', NULL),
    (2, 2, 'YAG single crystal', NULL);

INSERT INTO tem_camera_types (tem_camera_type_id, tem_camera_manufacturer_id, name, notes) VALUES
    (1, 1, 'SciMOS 2051', NULL),
    (2, 2, 'Zyla 5.5 sCMOS', NULL);

INSERT INTO tem_cameras (tem_camera_id, tem_camera_type_id, visible_id, notes) VALUES
    (1, 1, 'CAM-001', NULL),
    (2, 1, 'CAM-002', NULL),
    (3, 1, 'CAM-003', NULL),
    (4, 1, 'CAM-004', NULL),
    (5, 1, 'CAM-005', NULL),
    (6, 1, 'CAM-006', NULL),
    (7, 1, 'CAM-007', NULL),
    (8, 1, 'CAM-008', NULL),
    (9, 2, 'CAM-009', NULL),
    (10, 2, 'CAM-010', NULL);

INSERT INTO tem_pc_ip_addresses (tem_pc_ip_address_id, tem_id, ip_address, start_date, end_date) VALUES
    (1, 1, X'0A653232', '2014-01-01 00:00:00', NULL),
    (2, 2, X'0A65323C', '2014-01-01 00:00:00', NULL),
    (3, 3, X'0A653246', '2014-01-01 00:00:00', NULL),
    (4, 1, X'00000000', '2011-01-01 00:00:00', NULL);

INSERT INTO tem_scintillators (tem_scintillator_id, tem_scintillator_type_id, visible_id, notes) VALUES
    (1, 1, 'SCINT-001', NULL),
    (2, 1, 'SCINT-002', NULL),
    (3, 2, 'SCINT-003', NULL),
    (4, 1, 'SCINT-004', NULL),
    (5, 2, 'SCINT-005', NULL);

INSERT INTO temcas (temca_id, tem_id, tem_scintillator_id, temca_type_id, start_date, end_date, notes) VALUES
    (1, 1, 1, 2, '2014-01-01 00:00:00', '2014-06-23 00:00:00', NULL),
    (2, 2, 2, 2, '2014-01-01 00:00:00', NULL, NULL),
    (3, 1, 1, 2, '2014-06-23 00:00:00', '2014-07-30 00:00:00', NULL),
    (4, 3, 3, 1, '2014-01-01 00:00:00', '2015-04-24 00:00:00', NULL),
    (5, 1, 4, 2, '2014-07-30 00:00:00', '2014-09-15 00:00:00', NULL),
    (6, 1, 4, 2, '2014-09-15 00:00:00', '2014-09-26 00:00:00', NULL),
    (7, 1, 4, 2, '2014-09-26 00:00:00', '2015-06-18 00:00:00', NULL),
    (8, 3, 3, 1, '2015-04-24 00:00:00', '2015-06-01 00:00:00', NULL),
    (9, 3, 3, 1, '2015-06-01 00:00:00', '2015-06-18 00:00:00', NULL),
    (10, 3, 3, 1, '2015-06-18 00:00:00', '2015-07-13 00:00:00', NULL),
    (11, 1, 5, 1, '2015-06-18 00:00:00', '2016-03-30 00:00:00', NULL),
    (12, 3, 3, 1, '2015-07-13 00:00:00', '2016-03-30 00:00:00', NULL),
    (13, 3, 3, 1, '2016-03-30 00:00:00', NULL, NULL),
    (14, 1, 5, 2, '2016-03-30 00:00:00', NULL, NULL);

INSERT INTO tem_camera_configurations (tem_camera_configuration_id, temca_id, tem_camera_id, tem_camera_number, tem_camera_array_col, tem_camera_array_row, tem_camera_width, tem_camera_height, tem_camera_mask_url, tem_camera_transformation_ref, notes) VALUES
    (1, 1, 1, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (2, 1, 2, 1, 1, 0, 2560, 2160, NULL, NULL, NULL),
    (3, 1, 3, 2, 0, 1, 2560, 2160, NULL, NULL, NULL),
    (4, 1, 4, 3, 1, 1, 2560, 2160, NULL, NULL, NULL),
    (5, 3, 1, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (6, 3, 2, 1, 1, 0, 2560, 2160, NULL, NULL, NULL),
    (7, 3, 3, 2, 0, 1, 2560, 2160, NULL, NULL, NULL),
    (8, 3, 4, 3, 1, 1, 2560, 2160, NULL, NULL, NULL),
    (9, 5, 1, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (10, 5, 2, 1, 1, 0, 2560, 2160, NULL, NULL, NULL),
    (11, 5, 3, 2, 0, 1, 2560, 2160, NULL, NULL, NULL),
    (12, 5, 4, 3, 1, 1, 2560, 2160, NULL, NULL, NULL),
    (13, 6, 1, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (14, 6, 2, 1, 1, 0, 2560, 2160, NULL, NULL, NULL),
    (15, 6, 3, 2, 0, 1, 2560, 2160, NULL, NULL, NULL),
    (16, 6, 4, 3, 1, 1, 2560, 2160, NULL, NULL, NULL),
    (17, 7, 1, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (18, 7, 2, 1, 1, 0, 2560, 2160, NULL, NULL, NULL),
    (19, 7, 3, 2, 0, 1, 2560, 2160, NULL, NULL, NULL),
    (20, 7, 4, 3, 1, 1, 2560, 2160, NULL, NULL, NULL),
    (21, 11, 1, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (22, 14, 1, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (23, 14, 2, 1, 1, 0, 2560, 2160, NULL, NULL, NULL),
    (24, 14, 3, 2, 0, 1, 2560, 2160, NULL, NULL, NULL),
    (25, 14, 4, 3, 1, 1, 2560, 2160, NULL, NULL, NULL),
    (26, 2, 5, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (27, 2, 6, 1, 1, 0, 2560, 2160, NULL, NULL, NULL),
    (28, 2, 7, 2, 0, 1, 2560, 2160, NULL, NULL, NULL),
    (29, 2, 8, 3, 1, 1, 2560, 2160, NULL, NULL, NULL),
    (30, 4, 9, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (31, 8, 9, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (32, 9, 9, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (33, 10, 10, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (34, 12, 10, 0, 0, 0, 2560, 2160, NULL, NULL, NULL),
    (35, 13, 10, 0, 0, 0, 2560, 2160, NULL, NULL, NULL);

INSERT INTO gomigrate (id, migration_id) VALUES
    (1, 1),
    (2, 2);
