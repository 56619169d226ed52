-- Back to the indexes of 000002, 000004 and 000006.
DROP INDEX idx_post_author_id;
CREATE INDEX idx_post_author_id ON post (author_id, created_at DESC);
DROP INDEX idx_post_newest;

DROP INDEX idx_airdrop_project_latest;

DROP INDEX idx_routine_run_routine_id;
CREATE INDEX idx_routine_run_routine_id ON routine_run (routine_id, start_time DESC);

DROP INDEX idx_routine_user_id;
CREATE INDEX idx_routine_user_id ON routine (user_id, created_at DESC);

DROP INDEX idx_users_oldest;

DROP INDEX idx_place_newest_keyset;
CREATE INDEX idx_place_newest ON place (created_at DESC, id);

DROP INDEX idx_place_category_rating;
DROP INDEX idx_place_rating_keyset;
CREATE INDEX idx_place_rating ON place (rating DESC NULLS LAST, id);
