PRAGMA user_version=1;
BEGIN TRANSACTION;
CREATE TABLE "audit" (
   "id" INTEGER PRIMARY KEY,
   "at" REAL NOT NULL,
   "kind" TEXT NOT NULL,
   "detail" TEXT NOT NULL
);
INSERT INTO "audit" VALUES(1,1790000007.0,'command.denied','{"from": "+4915112345678", "text": "PUMP 7 ON"}');
CREATE TABLE "event" (
   "id" INTEGER PRIMARY KEY,
   "topic" TEXT NOT NULL,
   "payload" TEXT NOT NULL,
   "qos" INTEGER NOT NULL,
   "retain" INTEGER NOT NULL,
   "created_at" REAL NOT NULL,
   "done_at" REAL
);
INSERT INTO "event" VALUES(1,'message/1','{"id": 1, "to": "+491701234567", "state": "queued", "parts": null, "modem": null, "at": "2026-09-21T11:06:40.000Z"}',1,0,1790000000.0,NULL);
CREATE TABLE "inbox" (
   "id" INTEGER PRIMARY KEY,
   "sender" TEXT,
   "text" TEXT,
   "sent_at" TEXT,
   "received_at" REAL NOT NULL,
   "modem" TEXT,
   "parts" INTEGER NOT NULL,
   "error" TEXT,
   "handled_at" REAL
);
INSERT INTO "inbox" VALUES(1,'+491701234566','hello world','2026-11-21T21:00:00+01:00',1790000005.0,'sim0',1,NULL,NULL);
CREATE TABLE "inbox_part" (
   "id" INTEGER PRIMARY KEY,
   "modem" TEXT NOT NULL,
   "pdu" TEXT NOT NULL,
   "sender" TEXT,
   "text" TEXT,
   "encoding" TEXT,
   "sent_at" TEXT,
   "concat_reference" INTEGER,
   "concat_total" INTEGER,
   "concat_sequence" INTEGER,
   "received_at" REAL NOT NULL,
   "error" TEXT,
   "dedup_key" TEXT,
   "inbox_id" INTEGER
);
INSERT INTO "inbox_part" VALUES(1,'sim0','07919471000000F0040C919471103254660000621121120000400AE8329BFD4697D9EC37','+491701234566','hello world','gsm7','2026-11-21T21:00:00+01:00',NULL,NULL,NULL,1790000005.0,NULL,'d1',1);
INSERT INTO "inbox_part" VALUES(2,'sim0','07919471000000F0440C91947110325466000062112112000040A0050003410201AAAA','+491701234566','first half ','gsm7','2026-11-21T21:10:00+01:00',65,2,1,1790000006.0,NULL,'d2',NULL);
CREATE TABLE "message" (
   "id" INTEGER PRIMARY KEY,
   "client_key" TEXT,
   "source" TEXT NOT NULL DEFAULT '',
   "recipient" TEXT NOT NULL,
   "text" TEXT NOT NULL,
   "priority" INTEGER NOT NULL DEFAULT 1,
   "created_at" REAL NOT NULL,
   "valid_until" REAL,
   "report" INTEGER NOT NULL DEFAULT 0,
   "state" TEXT NOT NULL,
   "attempts" INTEGER NOT NULL DEFAULT 0,
   "next_attempt_at" REAL,
   "last_error" TEXT,
   "lease_until" REAL,
   "modem" TEXT,
   "updated_at" REAL
);
INSERT INTO "message" VALUES(1,'k-1','alerts','+491701234567','pump 7 failed',0,1790000000.0,1790086400.0,0,'queued',0,1790000000.0,NULL,NULL,NULL,1790000000.0);
INSERT INTO "message" VALUES(2,NULL,'cli','+491701234568','part one and part two',1,1790000001.0,NULL,1,'sending',1,1790000001.0,NULL,1790000061.0,'sim0',1790000002.0);
INSERT INTO "message" VALUES(3,'k-3','alerts','+491701234569','hello',1,1790000002.0,NULL,1,'sent',1,1790000002.0,NULL,NULL,'sim0',1790000003.0);
INSERT INTO "message" VALUES(4,NULL,'cli','+491701234570','bad number',2,1790000003.0,NULL,0,'failed',1,1790000003.0,'CMS ERROR 21: short message transfer rejected',NULL,'sim0',1790000004.0);
CREATE TABLE "part" (
   "message_id" INTEGER REFERENCES "message"("id"),
   "sequence" INTEGER,
   "total" INTEGER NOT NULL,
   "pdu" TEXT NOT NULL,
   "tpdu_length" INTEGER NOT NULL,
   "modem" TEXT,
   "message_reference" INTEGER,
   "state" TEXT NOT NULL,
   "sent_at" REAL,
   "delivered_at" REAL,
   "status" INTEGER,
   PRIMARY KEY ("message_id", "sequence")
);
INSERT INTO "part" VALUES(2,1,2,'0051000C9194711032548600000000A0050003070201E8329BFD06','','sim0',17,'sent',1790000002.0,NULL,NULL);
INSERT INTO "part" VALUES(2,2,2,'0051000C9194711032548600000000A0050003070202F0329BFD06',26,NULL,NULL,'pending',NULL,NULL,NULL);
INSERT INTO "part" VALUES(3,1,1,'0031000C919471103254960000AA05E8329BFD06',19,'sim0',18,'sent',1790000003.0,NULL,NULL);
CREATE TABLE "state" (
   "namespace" TEXT,
   "key" TEXT,
   "value" TEXT NOT NULL,
   PRIMARY KEY ("namespace", "key")
);
INSERT INTO "state" VALUES('optout','+491701234571','true');
CREATE UNIQUE INDEX "message_idempotency"
    ON "message" ("client_key", "recipient");
CREATE INDEX "message_queue"
    ON "message" ("state", "priority", "id");
CREATE INDEX "message_created"
    ON "message" ("created_at");
CREATE UNIQUE INDEX "inbox_part_pdu"
    ON "inbox_part" ("pdu");
CREATE UNIQUE INDEX "inbox_part_dedup"
    ON "inbox_part" ("dedup_key");
CREATE INDEX "event_pending"
    ON "event" ("done_at", "id");
COMMIT;
