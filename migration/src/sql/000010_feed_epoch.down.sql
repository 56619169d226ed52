DROP TABLE IF EXISTS change_feed_epoch;
