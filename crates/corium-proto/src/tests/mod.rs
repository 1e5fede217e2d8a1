mod message_layer;
mod pair;
