DROP TABLE IF EXISTS preference;
DROP TABLE IF EXISTS review;
DROP TABLE IF EXISTS place;
DROP FUNCTION IF EXISTS app_earth_point(double precision, double precision);
DROP EXTENSION IF EXISTS pg_trgm;
DROP EXTENSION IF EXISTS earthdistance;
DROP EXTENSION IF EXISTS cube;
