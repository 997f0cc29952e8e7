-- How each item is made; immutable once defined.
CREATE TABLE products (
    site_id                    text NOT NULL,
    item_id                    text NOT NULL,
    pacemaker_station_id       text NOT NULL,
    container_quantity         bigint NOT NULL CHECK (container_quantity > 0),
    finished_goods_location_id text NOT NULL,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, item_id)
);

-- Per site: the changes of its orders are numbered 1, 2, 3...; bumping this row
-- also serialises them, so sequences commit in order.
CREATE TABLE order_sites (
    site_id              text PRIMARY KEY,
    last_update_sequence bigint NOT NULL
);

CREATE TABLE orders (
    site_id                 text NOT NULL,
    erp_order_id            text NOT NULL,
    item_id                 text NOT NULL,
    quantity                bigint NOT NULL CHECK (quantity > 0),
    made_quantity           bigint NOT NULL CHECK (made_quantity >= 0),
    due_time                timestamptz NOT NULL,
    priority                integer NOT NULL,
    state                   text NOT NULL
                            CHECK (state IN ('OPEN', 'RELEASED', 'COMPLETED', 'CANCELLED')),
    cancel_reason           text NOT NULL,
    -- Units stations was told to make, and the last instruction number used.
    released_quantity       bigint NOT NULL CHECK (released_quantity >= 0),
    last_instruction_number integer NOT NULL CHECK (last_instruction_number >= 0),
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    PRIMARY KEY (site_id, erp_order_id),
    FOREIGN KEY (site_id, item_id) REFERENCES products
);
-- ListOrders pages by (due_time, erp_order_id).
CREATE INDEX orders_by_due ON orders (site_id, due_time, erp_order_id);

-- Every change of an order: the order as it was right after it, in sequence.
CREATE TABLE order_updates (
    site_id       text NOT NULL,
    sequence      bigint NOT NULL,
    erp_order_id  text NOT NULL,
    item_id       text NOT NULL,
    quantity      bigint NOT NULL,
    made_quantity bigint NOT NULL,
    due_time      timestamptz NOT NULL,
    priority      integer NOT NULL,
    state         text NOT NULL,
    cancel_reason text NOT NULL,
    released_quantity       bigint NOT NULL,
    last_instruction_number integer NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (site_id, sequence),
    FOREIGN KEY (site_id, erp_order_id) REFERENCES orders
);

-- What the pacemaker finished, per instruction: an instruction counts once.
CREATE TABLE instruction_completions (
    site_id        text NOT NULL,
    instruction_id text NOT NULL,
    erp_order_id   text NOT NULL,
    item_id        text NOT NULL,
    location_id    text NOT NULL,
    lot_id         text NOT NULL,
    quantity       bigint NOT NULL,
    station_id     text NOT NULL,
    completed_at   timestamptz NOT NULL,
    PRIMARY KEY (site_id, instruction_id),
    FOREIGN KEY (site_id, erp_order_id) REFERENCES orders
);
