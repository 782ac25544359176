<?php

/*
| SQLite only. DB_DATABASE may be absolute, or relative to the application's base path (so that
| artisan, the web server and a deploy tool all mean the same file whatever their working
| directory).
*/
$sqlite = env('DB_DATABASE', 'database/database.sqlite');
if ($sqlite !== ':memory:' && substr($sqlite, 0, 1) !== '/') {
    $sqlite = base_path($sqlite);
}

return [

    'default' => env('DB_CONNECTION', 'sqlite'),

    'connections' => [
        'sqlite' => [
            'driver' => 'sqlite',
            'url' => env('DATABASE_URL'),
            'database' => $sqlite,
            'prefix' => '',
            'foreign_key_constraints' => env('DB_FOREIGN_KEYS', true),
        ],
    ],

    'migrations' => 'migrations',

];
