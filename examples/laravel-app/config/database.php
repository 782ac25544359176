<?php

/*
| SQLite by default; MySQL/MariaDB and PostgreSQL as Laravel's own config has them (the laravel
| recipe backs up and restores all four). An SQLite DB_DATABASE may be absolute, or relative to
| the application's base path (so that artisan, the web server and a deploy tool all mean the
| same file whatever their working directory).
*/
$sqlite = env('DB_DATABASE', 'database/database.sqlite');
if ($sqlite !== ':memory:' && substr($sqlite, 0, 1) !== '/') {
    $sqlite = base_path($sqlite);
}

$mysql = [
    'driver' => 'mysql',
    'url' => env('DATABASE_URL'),
    'host' => env('DB_HOST', '127.0.0.1'),
    'port' => env('DB_PORT', '3306'),
    'database' => env('DB_DATABASE', 'forge'),
    'username' => env('DB_USERNAME', 'forge'),
    'password' => env('DB_PASSWORD', ''),
    'unix_socket' => env('DB_SOCKET', ''),
    'charset' => 'utf8mb4',
    'collation' => 'utf8mb4_unicode_ci',
    'prefix' => '',
    'prefix_indexes' => true,
    'strict' => true,
    'engine' => null,
];

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

        'mysql' => $mysql,

        // Laravel 11's name for it; on Laravel 8 the mysql driver speaks to MariaDB.
        'mariadb' => $mysql,

        'pgsql' => [
            'driver' => 'pgsql',
            'url' => env('DATABASE_URL'),
            'host' => env('DB_HOST', '127.0.0.1'),
            'port' => env('DB_PORT', '5432'),
            'database' => env('DB_DATABASE', 'forge'),
            'username' => env('DB_USERNAME', 'forge'),
            'password' => env('DB_PASSWORD', ''),
            'charset' => 'utf8',
            'prefix' => '',
            'prefix_indexes' => true,
            'schema' => 'public',
            'sslmode' => 'prefer',
        ],
    ],

    'migrations' => 'migrations',

];
